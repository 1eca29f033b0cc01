"""Image decoding with torchvision.io; every failure names the file."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor

from sparse_rcnn.models.vision import torchvision
from sparse_rcnn.platform.errors import InputError, MissingFileError, PlatformError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class ImageDecodeError(PlatformError, RuntimeError):
    """An image file is missing, unreadable or not a decodable image."""


def read_image_bytes(path: str | Path) -> bytes:
    """Raw bytes of a local file or an object-store URI (``s3://``, ``gs://``, ...)."""
    p = str(path)
    if "://" in p and not p.startswith("file://"):
        import pyarrow.fs as pafs

        fs, inner = pafs.FileSystem.from_uri(p)
        with fs.open_input_stream(inner) as f:
            return f.read()
    return Path(p.removeprefix("file://")).read_bytes()


def load_image(path: str | Path) -> Tensor:
    """Decode an image as RGB ``uint8`` of shape ``(3, H, W)``.

    Raises ``ImageDecodeError`` naming the file when it is missing, empty or corrupt.
    """
    try:
        data = read_image_bytes(path)
    except OSError as e:
        raise ImageDecodeError(f"cannot read image {path}: {e.strerror or e}") from e
    if not data:
        raise ImageDecodeError(f"image file {path} is empty")
    try:
        image = torchvision.io.decode_image(
            torch.frombuffer(bytearray(data), dtype=torch.uint8), torchvision.io.ImageReadMode.RGB
        )
    except (RuntimeError, ValueError) as e:
        raise ImageDecodeError(f"cannot decode image {path}: {_decoder_reason(e)}") from e
    return image


def _decoder_reason(e: Exception) -> str:
    """torchvision's decoder message without its C++ source location, first sentence only:
    ``decode_image, .../decode_image.cpp:61, Unsupported image file. Only ...`` ->
    ``Unsupported image file``."""
    reason = re.sub(r"^.*\.cpp:\d+,\s*", "", str(e).strip(), flags=re.S)
    return reason.split(". ")[0].rstrip(".") or type(e).__name__


def list_images(paths: list[str | Path]) -> list[Path]:
    """Expand directories into their image files (sorted); files are kept as given.

    Raises :class:`MissingFileError` (a ``FileNotFoundError``) naming a path that does not
    exist, and :class:`InputError` (a ``ValueError``) when nothing is left.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES))
        elif p.exists():
            out.append(p)
        else:
            raise MissingFileError(f"no such image file or directory: {p}")
    if not out:
        raise InputError(
            f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {', '.join(map(str, paths))}"
        )
    return out

"""The platform's own checkpoint format and one loader for every supported kind of file.

Format ``sparse_rcnn_platform/1``: a dict with ``format``, ``state_dict``, ``model_config``
(the resolved :class:`ModelConfig` as a plain dict) and ``provenance`` (source file name, its
sha256, what produced it). Plain containers only, so ``weights_only=True`` reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import Tensor, nn

from sparse_rcnn.models.config import ModelConfig
from sparse_rcnn.models.detector import SparseRCNN
from sparse_rcnn.platform.checkpoints.mmdet import (
    CheckpointError,
    infer_model_config,
    load_state_dict_strict,
    read_checkpoint,
    sha256_of,
    state_dict_of,
)
from sparse_rcnn.platform.output_files import atomic_write

FORMAT = "sparse_rcnn_platform/1"


class _ErrorKeepingFile:
    """A binary file for ``torch.save`` that keeps the OS error of a failed write."""

    def __init__(self, f: BinaryIO):
        self.f, self.error = f, None

    def write(self, data: bytes) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def torch_save(obj: Any, f: BinaryIO) -> None:
    """``torch.save(obj, f)`` into an open binary file, except that a failed write raises its
    ``OSError`` (a full disk: ``ENOSPC``): torch reports it as ``RuntimeError("... unexpected
    pos ...")`` and the errno is lost."""
    keeper = _ErrorKeepingFile(f)
    try:
        torch.save(obj, keeper)
    except RuntimeError:
        if keeper.error is not None:
            raise keeper.error from None
        raise


def save_checkpoint(
    path: str | Path,
    state_dict: dict[str, Tensor],
    cfg: ModelConfig,
    provenance: dict[str, Any],
) -> None:
    """Write our format atomically (a partial file never replaces a good one, and no temporary
    file is left behind on failure); the parent folder is created. A directory at ``path``, or
    a full disk, raises :class:`~sparse_rcnn.platform.errors.OutputPathError`."""
    obj = {
        "format": FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "model_config": cfg.to_dict(),
        "provenance": provenance,
    }
    atomic_write(path, lambda f: torch_save(obj, f), create_parent=True)


def convert_mmdet_checkpoint(src: str | Path, dst: str | Path, expect: ModelConfig | None = None):
    """Read an mmdetection checkpoint, check that it loads strictly into the architecture read
    off its shapes (or ``expect``), and write it in our format. Returns the model config."""
    obj = read_checkpoint(src)
    sd = state_dict_of(obj, src)
    cfg = expect or infer_model_config(sd, source=str(src))
    load_state_dict_strict(SparseRCNN(cfg), sd, str(src))
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    provenance = {
        "source": Path(src).name,
        "sha256": sha256_of(src),
        "source_format": "mmdetection",
        "mmdet_version": str(meta.get("mmdet_version", "")),
    }
    save_checkpoint(dst, sd, cfg, provenance)
    return cfg


def load_model(
    path: str | Path, expect: ModelConfig | None = None
) -> tuple[SparseRCNN, dict[str, Any]]:
    """Build a :class:`SparseRCNN` from our format or an mmdetection checkpoint, strictly.

    ``expect``, when given, is the config the caller wants; a checkpoint of another architecture
    then fails with the mismatching keys and shapes. Returns the model (eval mode) and the
    checkpoint's provenance dict.
    """
    obj = read_checkpoint(path)
    if obj.get("format") == FORMAT:
        try:
            cfg = ModelConfig.from_dict(obj["model_config"])
            provenance = dict(obj.get("provenance", {}))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: damaged model_config or provenance: {e}") from e
    elif "format" in obj:
        raise CheckpointError(f"{path}: unknown checkpoint format {obj['format']!r}")
    else:
        cfg = infer_model_config(state_dict_of(obj, path), source=str(path))
        provenance = {"source": Path(path).name, "source_format": "mmdetection"}
    if expect is not None:
        cfg = expect
    model = SparseRCNN(cfg)
    load_state_dict_strict(model, state_dict_of(obj, path), str(path))
    return model.eval(), provenance


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load ImageNet weights from a local torchvision ResNet file (``resnet50-*.pth``) into
    the trunk; the classifier (``fc.*``) is dropped, every other key must match."""
    obj = read_checkpoint(path)
    sd = state_dict_of(obj, path)
    sd = {k.removeprefix("backbone."): v for k, v in sd.items() if not k.startswith("fc.")}
    load_state_dict_strict(backbone, sd, str(path))

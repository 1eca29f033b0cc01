"""COCO JSON files decoded straight to the columns evaluation reads, or refused.

Two file kinds: a COCO results list ``[{"image_id", "category_id", "score", "bbox"}, ...]``
and a COCO instances file (``images``, ``annotations``, ``categories``). msgspec decodes each
into typed records holding only the fields COCOeval(bbox) uses; everything else (segmentation
polygons, file names, licenses) is skipped without building Python objects for it.
On the val2017-sized bench case a fresh process reads the 78 MB results file (500k
detections) in ~0.33 s of CPU, where ``json.load`` plus the column conversion took ~2.4 s, and
the 5 MB ground truth in ~0.06 s instead of ~0.16 s. Measured and not taken: orjson and untyped
msgspec still build a dict per detection (~1.1 s); pyarrow's JSON reader needs
newline-delimited records and took ~1.0 s of CPU; polars ~0.75 s after a 0.2 s import.

A decoder here accepts only plainly typed files: JSON integers for ids, JSON numbers for
``score``, ``bbox`` and ``area``, four-number boxes, every required key present, valid
UTF-8. Anything else (invalid JSON, a ``NaN`` literal, an id written ``2.0``, a missing key)
makes it return ``None``; the callers (:mod:`.detections`, :mod:`.ground_truth`) then read the
file with the standard library and either accept it or report the problem exactly as they
always did. So this module changes how fast a file is read, never which files are accepted
or what they mean.

Boxes are ``x, y, w, h`` in absolute pixels, as in the files.
"""

from __future__ import annotations

import gc
import mmap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from pathlib import Path

import msgspec
import numpy as np


# gc=False: the records hold only numbers, so the cyclic collector need not track them.
class _Result(msgspec.Struct, gc=False):
    image_id: int
    category_id: int
    score: float
    bbox: tuple[float, float, float, float]


class _Id(msgspec.Struct, gc=False):
    id: int


class _Annotation(msgspec.Struct, gc=False):
    id: int
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    area: float | None = None  # None (absent or null): the box area, as load_ground_truth does
    iscrowd: int | bool = 0


class _Instances(msgspec.Struct, gc=False):
    images: list[_Id]
    annotations: list[_Annotation]
    categories: list[_Id]


_RESULTS = msgspec.json.Decoder(list[_Result])
_INSTANCES = msgspec.json.Decoder(_Instances)
# Results are decoded in pieces of about this size: the records of one piece (~3x its size)
# stay in the CPU cache until they become columns. 64-128 KiB measured fastest.
_CHUNK_BYTES = 1 << 16


@dataclass(frozen=True)
class ResultColumns:
    """A COCO results list as columns, one row per detection, in file order.

    Attributes:
        image_id, category_id: (N,) int64. score: (N,) float64.
        bbox: (N, 4) float64 ``x, y, w, h`` in absolute pixels.
    """

    image_id: np.ndarray
    category_id: np.ndarray
    score: np.ndarray
    bbox: np.ndarray


@dataclass(frozen=True)
class InstanceColumns:
    """What COCOeval(bbox) reads from an instances file, in file order.

    Attributes:
        image_ids: (I,) int64 ``id`` of each entry of ``images`` (unsorted, maybe repeated).
        category_ids: (K,) int64 ``id`` of each entry of ``categories``.
        ann_id, ann_image_id, ann_category_id: (G,) int64 annotation fields.
        bbox: (G, 4) float64 ``x, y, w, h`` in absolute pixels.
        area: (G,) float64 the ``area`` field, NaN where absent or null.
        iscrowd: (G,) bool truth value of ``iscrowd`` (absent: False).
    """

    image_ids: np.ndarray
    category_ids: np.ndarray
    ann_id: np.ndarray
    ann_image_id: np.ndarray
    ann_category_id: np.ndarray
    bbox: np.ndarray
    area: np.ndarray
    iscrowd: np.ndarray


@contextmanager
def mapped(path: Path) -> Iterator[bytes | mmap.mmap]:
    """The bytes of the file at ``path``, memory-mapped while the block runs.

    Mapping instead of reading saves a copy: ~0.06 s of CPU for a 78 MB results file.
    """
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:  # an empty file cannot be mapped
            yield b""
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            yield data


def decode_results(data: bytes | mmap.mmap) -> ResultColumns | None:
    """Columns of a COCO results file's bytes; ``None`` where the file is not plainly typed.

    The list is decoded ~64 KiB at a time (:func:`_chunks`), each piece turned into columns
    while its records are still in the CPU cache: ~25% faster than one decode of the whole
    list on the bench case, and the records of the whole file (~150 MB for 500k detections)
    never exist at once. Where the list cannot be cut that way it is decoded whole.
    """
    span = _list_span(data)
    columns = None if span is None else decode_results_part(data, *span, first=True)
    if columns is None:
        # Not a list, not plainly typed, or not cut between detections: one decode of the
        # whole file decides.
        records = _decode(_RESULTS, data)
        return None if records is None else _result_columns(records)
    return columns


def decode_results_part(
    data: bytes | mmap.mmap, start: int, stop: int, first: bool
) -> ResultColumns | None:
    """Columns of the detections in ``data[start:stop]`` (a range from :func:`split_results`,
    or the whole list); ``None`` where they are not plainly typed.

    Cut pieces that fail to decode, or an empty piece other than the list's very first (``[]``
    is a list; ``[{...},]`` is not JSON), also give ``None``: the caller then decodes the whole
    file, which decides.
    """
    parts: list[ResultColumns] = []
    for chunk in _chunks(data, start, stop):
        records = _decode(_RESULTS, chunk)
        if records is None or (not records and (parts or not first)):
            return None
        parts.append(_result_columns(records))
    return concat_results(parts)


def concat_results(parts: list[ResultColumns]) -> ResultColumns:
    """The rows of ``parts`` in order."""
    return ResultColumns(
        image_id=np.concatenate([p.image_id for p in parts]),
        category_id=np.concatenate([p.category_id for p in parts]),
        score=np.concatenate([p.score for p in parts]),
        bbox=np.concatenate([p.bbox for p in parts]),
    )


def split_results(data: bytes | mmap.mmap, shares: list[float]) -> list[tuple[int, int]]:
    """Byte ranges of a COCO results list that :func:`decode_results_part` decodes separately.

    Range ``i`` holds about ``shares[i]`` (fractions summing to 1) of the list's bytes; each
    starts after the ``,`` of a ``},`` and ends at its ``}`` (or the list's end), the cut that
    :func:`_chunks` makes. Fewer ranges come back where the list is too
    short to cut so, and ``[]`` where ``data`` is not a list.
    """
    span = _list_span(data)
    if span is None:
        return []
    start, last = span
    ranges, edge = [], start
    for share in shares[:-1]:
        cut = data.find(b"},", edge + max(1, round(share * (last - start))), last)
        if cut < 0:
            break
        ranges.append((edge, cut + 1))
        edge = cut + 2
    return [*ranges, (edge, last)]


def _list_span(data: bytes | mmap.mmap) -> tuple[int, int] | None:
    """``(start, last)``: a JSON list's content lies in ``data[start:last]``, between its ``[``
    and ``]``; ``None`` where ``data`` is not a list (other than blanks around it)."""
    first, last = data.find(b"["), data.rfind(b"]")
    if first < 0 or last < first or data[:first].strip() or data[last + 1 :].strip():
        return None
    return first + 1, last


def _chunks(data: bytes | mmap.mmap, start: int, stop: int) -> Iterator[bytes]:
    """``data[start:stop]``, elements of a JSON list, as JSON lists of consecutive elements,
    ~``_CHUNK_BYTES`` each.

    Cuts follow a ``}`` that a ``,`` follows, as between two detections. A cut anywhere else
    (inside a string, or between two objects nested in one detection) leaves a piece that is
    not valid JSON (an unterminated string, an unclosed object), so it fails to decode, and
    an empty piece after the first (``[{...},]``) is refused by the caller: pieces that all
    decode are the list.
    """
    while True:
        cut = data.find(b"},", start + _CHUNK_BYTES, stop)
        end = stop if cut < 0 else cut + 1
        yield b"[" + data[start:end] + b"]"
        if cut < 0:
            return
        start = end + 1


def _result_columns(records: list[_Result]) -> ResultColumns:
    """Columns of decoded result records."""
    n = len(records)
    return ResultColumns(
        image_id=_ints(records, "image_id"),
        category_id=_ints(records, "category_id"),
        score=np.fromiter(map(attrgetter("score"), records), np.float64, n),
        bbox=_boxes(records),
    )


def decode_instances(data: bytes | mmap.mmap) -> InstanceColumns | None:
    """Columns of a COCO instances file's bytes; ``None`` where it is not plainly typed."""
    doc = _decode(_INSTANCES, data)
    if doc is None:
        return None
    anns = doc.annotations
    area = [np.nan if a is None else a for a in map(attrgetter("area"), anns)]
    return InstanceColumns(
        image_ids=_ints(doc.images, "id"),
        category_ids=_ints(doc.categories, "id"),
        ann_id=_ints(anns, "id"),
        ann_image_id=_ints(anns, "image_id"),
        ann_category_id=_ints(anns, "category_id"),
        bbox=_boxes(anns),
        area=np.fromiter(area, np.float64, len(anns)),
        iscrowd=np.fromiter(map(bool, map(attrgetter("iscrowd"), anns)), bool, len(anns)),
    )


def _decode(decoder: msgspec.json.Decoder, data: bytes | mmap.mmap) -> object | None:
    # The standard library refuses bytes that are not UTF-8, even inside fields that msgspec
    # skips; checking first keeps the two readers in agreement. ASCII needs no check.
    if np.frombuffer(data, np.uint8).max(initial=0) >= 0x80:
        try:
            str(memoryview(data), "utf-8")
        except UnicodeDecodeError:
            return None
    # Decoding makes a few million number objects; the cyclic collector would scan the growing
    # heap over and over (about a third of the decoding time) though none of them can form a
    # cycle.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    finally:
        if was_enabled:
            gc.enable()


def _ints(records: list, field: str) -> np.ndarray:
    """(N,) int64 of one integer field; ids beyond int64 keep numpy's OverflowError, as the
    standard-library path does."""
    return np.fromiter(map(attrgetter(field), records), np.int64, len(records))


def _boxes(records: list) -> np.ndarray:
    """(N, 4) float64 of the records' ``bbox`` tuples."""
    n = len(records)
    flat = chain.from_iterable(map(attrgetter("bbox"), records))
    return np.fromiter(flat, np.float64, 4 * n).reshape(n, 4)

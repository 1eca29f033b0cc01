"""Detections in COCO results form, and their Parquet / COCO-results-JSON files.

A detection set is four parallel arrays, one row per box: the image id and the COCO category
id it belongs to, its confidence score, and its box as ``x, y, w, h`` in absolute pixels of the
original image (the COCO results convention; ``x, y`` is the top-left corner). Parquet files
hold the columns ``image_id, category_id, score, x, y, w, h``; JSON files are the COCO results
list ``[{"image_id", "category_id", "score", "bbox": [x, y, w, h]}, ...]``, decoded by
:mod:`.coco_json` (the standard library reads what that refuses, and reports what is wrong).
pyarrow is imported only for Parquet files.
"""

from __future__ import annotations

import json
import mmap
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from pathlib import Path

import numpy as np

from sparse_rcnn.platform.errors import InputError, MissingFileError
from sparse_rcnn.platform.evaluation.coco_json import (
    ResultColumns,
    concat_results,
    decode_results,
    decode_results_part,
    mapped,
    split_results,
)
from sparse_rcnn.platform.evaluation.forked import Forked, can_fork
from sparse_rcnn.platform.evaluation.json_columns import int_column, number_column
from sparse_rcnn.platform.output_files import atomic_write

PARQUET_COLUMNS = ("image_id", "category_id", "score", "x", "y", "w", "h")
_JSON_KEYS = ("image_id", "category_id", "score", "bbox")
# Results files below this size are decoded in one process: forking and sending the columns
# back (~10 ms) would cost more than the second core saves.
SPLIT_MIN_BYTES = 8 << 20


@dataclass(frozen=True)
class Detections:
    """COCO results, bbox xywh in original-image pixels.

    Attributes:
        image_id: (N,) int64 COCO image ids.
        category_id: (N,) int64 COCO category ids (not contiguous class labels).
        score: (N,) float32 or float64 confidence; higher ranks first.
        bbox: (N, 4) float64 boxes ``x, y, w, h`` in absolute pixels.

    Arrays are converted to these dtypes on construction; mismatched lengths raise ValueError.
    """

    image_id: np.ndarray
    category_id: np.ndarray
    score: np.ndarray
    bbox: np.ndarray

    def __post_init__(self) -> None:
        image_id = np.asarray(self.image_id).astype(np.int64, copy=False).reshape(-1)
        category_id = np.asarray(self.category_id).astype(np.int64, copy=False).reshape(-1)
        score = np.asarray(self.score)
        if score.dtype not in (np.float32, np.float64):
            score = score.astype(np.float64)
        score = score.reshape(-1)
        bbox = np.asarray(self.bbox, dtype=np.float64)
        if bbox.size == 0:
            bbox = bbox.reshape(0, 4)
        if bbox.ndim != 2 or bbox.shape[1] != 4:
            raise ValueError(
                f"Detections.bbox must have shape (N, 4) (x, y, w, h), got {bbox.shape}"
            )
        n = len(image_id)
        lengths = {"category_id": len(category_id), "score": len(score), "bbox": len(bbox)}
        bad = {k: v for k, v in lengths.items() if v != n}
        if bad:
            raise ValueError(f"Detections arrays differ in length: image_id has {n}, {bad}")
        object.__setattr__(self, "image_id", image_id)
        object.__setattr__(self, "category_id", category_id)
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "bbox", bbox)

    def __len__(self) -> int:
        return len(self.image_id)

    @classmethod
    def empty(cls) -> Detections:
        """A detection set with no rows (float32 scores)."""
        return cls(
            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros((0, 4))
        )

    @classmethod
    def concat(cls, parts: list[Detections]) -> Detections:
        """Rows of ``parts`` in order; an empty list gives :meth:`empty`.

        The score dtype is float32 only when every part has float32 scores.
        """
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.image_id for p in parts]),
            np.concatenate([p.category_id for p in parts]),
            np.concatenate([p.score for p in parts]),
            np.concatenate([p.bbox for p in parts]),
        )

    @classmethod
    def from_coco_results(cls, results: list[dict], source: str = "results") -> Detections:
        """Build from a COCO results list; ``source`` names the input in error messages."""
        if not isinstance(results, list):
            raise InputError(
                f"{source}: expected a JSON list of detections, got {type(results).__name__}"
            )
        n = len(results)
        try:  # columns through map/fromiter: ~2x faster than np.array on lists of lists
            cols = {k: list(map(itemgetter(k), results)) for k in _JSON_KEYS}
            if (np.fromiter(map(len, cols["bbox"]), np.int64, n) != 4).any():
                raise ValueError("bbox of the wrong length")
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{source}: {_first_bad_result(results)}") from e

        def entry(i: int) -> str:
            return f"{source}: entry {i}"

        coords = list(chain.from_iterable(cols["bbox"]))
        return cls(
            int_column(cols["image_id"], "image_id", entry),
            int_column(cols["category_id"], "category_id", entry),
            number_column(cols["score"], "score", entry),
            number_column(coords, "bbox value", lambda j: entry(j // 4)).reshape(n, 4),
        )

    def to_coco_results(self) -> list[dict]:
        """The COCO results list: ``{"image_id", "category_id", "score", "bbox": [x, y, w, h]}``.

        Values are Python ints and floats (float32 scores widen exactly to float64).
        """
        return [
            {"image_id": i, "category_id": c, "score": s, "bbox": b}
            for i, c, s, b in zip(
                self.image_id.tolist(),
                self.category_id.tolist(),
                self.score.tolist(),
                self.bbox.tolist(),
                strict=True,
            )
        ]


def _first_bad_result(results: list) -> str:
    """Describe the first entry of a COCO results list that cannot be read."""
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            return f"entry {i} is a {type(r).__name__}, expected an object"
        missing = [k for k in _JSON_KEYS if k not in r]
        if missing:
            return f"entry {i} lacks {missing}; each detection needs {list(_JSON_KEYS)}"
        bbox = r["bbox"]
        if not isinstance(bbox, list | tuple) or len(bbox) != 4:
            return f"entry {i} has bbox {bbox!r}; expected [x, y, w, h]"
        try:
            int(r["image_id"]), int(r["category_id"]), float(r["score"])
            [float(v) for v in bbox]
        except (TypeError, ValueError):
            return f"entry {i} has a non-numeric field: {r!r}"
    return "detections could not be read as numbers"


def save_detections(dets: Detections, path: str | Path) -> None:
    """Write ``dets`` to ``path``: ``.parquet`` (columns image_id, category_id, score, x, y, w, h)
    or ``.json`` (a COCO results list), atomically (no partial file, no temporary file left on
    failure). Any other suffix raises :class:`InputError` naming it; a location that cannot be
    written raises :class:`~sparse_rcnn.platform.errors.OutputPathError`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow as pa  # here, not at the top: reading JSON needs no pyarrow
        import pyarrow.parquet as pq

        table = pa.table(
            {
                "image_id": pa.array(dets.image_id, pa.int64()),
                "category_id": pa.array(dets.category_id, pa.int64()),
                "score": pa.array(dets.score),
                "x": pa.array(dets.bbox[:, 0]),
                "y": pa.array(dets.bbox[:, 1]),
                "w": pa.array(dets.bbox[:, 2]),
                "h": pa.array(dets.bbox[:, 3]),
            }
        )
        atomic_write(path, lambda f: pq.write_table(table, f))
    elif suffix == ".json":
        text = json.dumps(dets.to_coco_results())
        atomic_write(path, lambda f: f.write(text.encode()))
    else:
        raise InputError(
            f"{path}: unknown detections suffix {path.suffix!r}; use .parquet or .json"
        )


def _check_integral(path: Path, name: str, values: np.ndarray) -> None:
    """Float id columns pass only with integral values (``2.0``); ``2.7`` is not truncated."""
    if values.dtype.kind == "f" and not (np.mod(values, 1) == 0).all():
        k = int(np.flatnonzero(np.mod(values, 1) != 0)[0])
        raise InputError(
            f"{path}: Parquet column '{name}' row {k} holds {values[k]:g}, expected integers"
        )


def load_detections(path: str | Path, workers: int = 1) -> Detections:
    """Read detections written by :func:`save_detections` (or any COCO results JSON).

    Raises :class:`MissingFileError` (a FileNotFoundError) for a missing file or a directory
    and :class:`InputError` (a ValueError) naming the file for an unknown suffix, missing
    Parquet columns, a non-numeric column, or JSON that is not a list of detections.
    ``workers > 1`` decodes a large JSON file in that many processes
    (:func:`begin_load_detections`); the result is the same.
    """
    if workers > 1:
        with begin_load_detections(path, workers) as pending:
            return pending.result()
    return _read(Path(path))


def begin_load_detections(
    path: str | Path, workers: int = 1, other_work_bytes: int = 0
) -> PendingDetections:
    """Start reading detections; ``.result()`` gives what :func:`load_detections` gives.

    ``sparse-rcnn eval`` starts here, first thing: the children decode while it imports the
    rest of the evaluation and reads the ground truth. Forking before numpy and msgspec are
    imported was measured slower (0.69 s against 0.63 s for the whole ``eval`` on the bench
    case): each child then imports them again.

    With ``workers > 1``, on Linux, a COCO results JSON file of :data:`SPLIT_MIN_BYTES` or more
    is decoded in ``workers`` parts, all but the first in forked children (opt in only from a
    process without threads of its own: see :mod:`.forked`). ``other_work_bytes`` is what the
    caller does before ``.result()``, in bytes of results file that take as long to decode;
    it makes this process's part smaller. Everything else is read by ``.result()`` in this
    process, and every error is raised there.
    """
    return PendingDetections(Path(path), workers, other_work_bytes)


class PendingDetections:
    """Detections being read (:func:`begin_load_detections`); a context manager that stops
    any child still decoding on the way out."""

    def __init__(self, path: Path, workers: int, other_work_bytes: int):
        self._path = path
        self._stack = ExitStack()
        self._data: bytes | mmap.mmap = b""
        self._ranges: list[tuple[int, int]] = []
        self._children: list[Forked[ResultColumns | None]] = []
        if workers < 2 or not can_fork() or path.suffix.lower() != ".json":
            return
        try:
            if not path.is_file() or path.stat().st_size < SPLIT_MIN_BYTES:
                return
            data = self._stack.enter_context(mapped(path))
        except OSError:
            return  # .result() reads it again and reports the problem
        # Equal work per process: this one also does other_work_bytes' worth of other work.
        per_worker = (len(data) + other_work_bytes) / workers
        own = max(per_worker - other_work_bytes, 0) / len(data)
        shares = [own] + [(1.0 - own) / (workers - 1)] * (workers - 1)
        self._ranges = split_results(data, shares)
        self._data = data
        self._children = [
            Forked(decode_results_part, data, start, stop, False)
            for start, stop in self._ranges[1:]
        ]

    def result(self) -> Detections:
        try:
            columns = self._columns()
        finally:
            self.cancel()
        if columns is None:
            return _read(self._path)
        return Detections(columns.image_id, columns.category_id, columns.score, columns.bbox)

    def _columns(self) -> ResultColumns | None:
        """The decoded parts joined; ``None`` if any part is not plainly typed (or no part
        was started), so that the whole file is read again, which decides."""
        if not self._ranges:
            return None
        parts = [decode_results_part(self._data, *self._ranges[0], first=True)]
        if parts[0] is None:
            return None
        for child in self._children:
            parts.append(child.result())
            if parts[-1] is None:
                return None
        return concat_results(parts)

    def cancel(self) -> None:
        for child in self._children:
            child.cancel()
        self._children = []
        self._stack.close()

    def __enter__(self) -> PendingDetections:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


def _read(path: Path) -> Detections:
    """:func:`load_detections` in this process."""
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".json"):
        raise InputError(
            f"{path}: unknown detections suffix {path.suffix!r}; use .parquet or .json"
        )
    if path.is_dir():
        raise MissingFileError(f"detections {path} is a directory; give the detections file")
    if not path.is_file():
        raise MissingFileError(f"detections file not found: {path}")
    if suffix == ".json":
        with mapped(path) as data:
            columns = decode_results(data)
        if columns is not None:
            return Detections(columns.image_id, columns.category_id, columns.score, columns.bbox)
        # Not plainly typed: the standard library reads it, and accepts it or says what is wrong.
        try:
            with open(path) as f:
                results = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{path}: not valid JSON ({e})") from e
        return Detections.from_coco_results(results, source=str(path))
    return _read_parquet(path)


def _read_parquet(path: Path) -> Detections:
    """Detections from a Parquet file (columns :data:`PARQUET_COLUMNS`), with typed errors."""
    import pyarrow as pa  # here, not at the top: reading JSON needs no pyarrow
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{path}: not a readable Parquet file ({e})") from e
    missing = [c for c in PARQUET_COLUMNS if c not in table.column_names]
    if missing:
        raise InputError(
            f"{path}: Parquet detections lack columns {missing}; need {list(PARQUET_COLUMNS)}"
        )
    with_nulls = [c for c in PARQUET_COLUMNS if table.column(c).null_count]
    if with_nulls:
        raise InputError(f"{path}: Parquet detections have missing values in {with_nulls}")
    not_numeric = {
        c: str(table.schema.field(c).type)
        for c in PARQUET_COLUMNS
        if not pa.types.is_integer(t := table.schema.field(c).type) and not pa.types.is_floating(t)
    }
    if not_numeric:
        c, kind = next(iter(not_numeric.items()))
        raise InputError(f"{path}: Parquet column '{c}' holds {kind}, expected numbers")
    col = {c: table.column(c).to_numpy() for c in PARQUET_COLUMNS}
    for c in ("image_id", "category_id"):
        _check_integral(path, c, col[c])
    score = col["score"]
    if score.dtype != np.float32:
        score = score.astype(np.float64)
    bbox = np.stack([col["x"], col["y"], col["w"], col["h"]], axis=1).astype(np.float64)
    return Detections(col["image_id"], col["category_id"], score, bbox)

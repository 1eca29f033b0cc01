"""A detections file read in parts by forked children while the caller goes on.

``sparse-rcnn eval`` starts reading the detections first thing (:func:`begin_load_detections`):
a COCO results JSON file of 8 MiB or more is cut between detections and every part but the
first is decoded by a forked child (:mod:`.forked`), while this process imports the rest of
the evaluation and reads the ground truth; then it decodes the first part and joins the
columns. Forking before numpy and msgspec are imported was measured slower (0.69 s against
0.63 s for the whole ``eval`` on the bench case): each child then imports them again.

Whatever fails in the parts (a file that is not plainly typed, a child that dies) ends in
:func:`.detections.load_detections`' reading of the whole file, so which files are accepted,
their values and the error messages are those of the one-process reader.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sparse_rcnn.platform.evaluation.forked import Forked, can_fork

if TYPE_CHECKING:
    from sparse_rcnn.platform.evaluation.coco_json import ResultColumns
    from sparse_rcnn.platform.evaluation.detections import Detections

# Results files below this size are decoded in one process: forking and sending the columns
# back (~10 ms) would cost more than the second core saves.
SPLIT_MIN_BYTES = 8 << 20


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


def list_span(data: bytes | mmap.mmap) -> tuple[int, int] | None:
    """``(start, last)``: a JSON list's content lies in ``data[start:last]``, between its ``[``
    and ``]``; ``None`` where ``data`` is not a list (other than blanks around it)."""
    first, last = data.find(b"["), data.rfind(b"]")
    if first < 0 or last < first or data[:first].strip() or data[last + 1 :].strip():
        return None
    return first + 1, last


def split_results(data: bytes | mmap.mmap, shares: list[float]) -> list[tuple[int, int]]:
    """Byte ranges of a COCO results list that :func:`.coco_json.decode_results_part` decodes
    separately.

    Range ``i`` holds about ``shares[i]`` (fractions summing to 1) of the list's bytes; each
    starts after the ``,`` of a ``},`` and ends at its ``}`` (or the list's end), the cut that
    :func:`.coco_json.decode_results` makes. Fewer ranges come back where the list is too
    short to cut so, and ``[]`` where ``data`` is not a list.
    """
    span = list_span(data)
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


def begin_load_detections(
    path: str | Path, workers: int = 1, other_work_bytes: int = 0
) -> PendingDetections:
    """Start reading detections; ``.result()`` gives what ``load_detections(path)`` gives.

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
            Forked(_decode_part, data, start, stop) for start, stop in self._ranges[1:]
        ]

    def result(self) -> Detections:
        from sparse_rcnn.platform.evaluation.detections import Detections, load_detections

        try:
            columns = self._columns()
        finally:
            self.cancel()
        if columns is None:
            return load_detections(self._path)
        return Detections(columns.image_id, columns.category_id, columns.score, columns.bbox)

    def _columns(self) -> ResultColumns | None:
        """The decoded parts joined; ``None`` if any part is not plainly typed (or no part
        was started), so that the whole file is read again, which decides."""
        from sparse_rcnn.platform.evaluation.coco_json import concat_results, decode_results_part

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


def _decode_part(data: bytes | mmap.mmap, start: int, stop: int) -> ResultColumns | None:
    """A child's part (not the list's first)."""
    from sparse_rcnn.platform.evaluation.coco_json import decode_results_part

    return decode_results_part(data, start, stop, first=False)

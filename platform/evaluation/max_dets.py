"""COCOeval ``maxDets``: the one rule the job spec (at load) and the evaluation both apply.

A light module (no numpy, scipy or pyarrow) so that loading a job spec stays fast.
"""

from __future__ import annotations

from sparse_rcnn.platform.errors import InputError

COCO_MAX_DETS = (1, 10, 100)
MMDET_MAX_DETS = (100, 300, 1000)


class MaxDetsError(InputError):
    """``max_dets`` is not three increasing positive ints containing 100."""


def check_max_dets(max_dets: tuple[int, ...] | list[int]) -> tuple[int, int, int]:
    """Validate COCOeval ``maxDets``: three increasing positive ints, one of them 100.

    pycocotools reports AP (stats[0]) at maxDets=100 whatever the list says, hence the 100.
    Booleans and non-integral numbers are refused rather than truncated."""
    if any(isinstance(m, bool) or not float(m).is_integer() for m in max_dets):
        raise MaxDetsError(f"max_dets must be three increasing positive ints, got {list(max_dets)}")
    md = tuple(int(m) for m in max_dets)
    if len(md) != 3 or any(m <= 0 for m in md) or not md[0] < md[1] < md[2]:
        raise MaxDetsError(f"max_dets must be three increasing positive ints, got {list(max_dets)}")
    if 100 not in md:
        raise MaxDetsError(
            f"max_dets must contain 100: COCOeval reports AP at maxDets=100, got {list(md)}"
        )
    return md  # type: ignore[return-value]

"""One field of every record of a JSON list (COCO annotations, COCO results) as a typed column.

numpy converts silently: ``np.array([2.7], np.int64)`` is ``[2]``, ``np.array(["0.9"],
np.float64)`` is ``[0.9]`` and ``True`` is ``1``. These functions refuse such values instead,
naming the first record that holds one, so ``image_id: 2.7`` or ``score: "0.9"`` is an error and
not a different evaluation. Integral floats (``2.0``, as some writers emit ids) are accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from sparse_rcnn.platform.errors import InputError


def _show(v: Any) -> str:
    try:
        return json.dumps(v)
    except (TypeError, ValueError):
        return repr(v)


def _is_int(v: Any) -> bool:
    if isinstance(v, bool | np.bool_):
        return False
    if isinstance(v, int | np.integer):
        return True
    return isinstance(v, float | np.floating) and float(v).is_integer()


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def int_column(values: list[Any], field: str, where: Callable[[int], str]) -> np.ndarray:
    """``values`` as (N,) int64; InputError ``"{where(i)}: {field} is 2.7, not an integer"``
    for the first value that is not an integer (booleans and strings included)."""
    if set(map(type, values)) <= {int}:  # the common case, at C speed
        return np.fromiter(values, np.int64, len(values))
    for i, v in enumerate(values):
        if not _is_int(v):
            raise InputError(f"{where(i)}: {field} is {_show(v)}, not an integer")
    return np.array(values, dtype=np.float64).astype(np.int64)


def number_column(values: list[Any], field: str, where: Callable[[int], str]) -> np.ndarray:
    """``values`` as (N,) float64; InputError ``"{where(i)}: {field} is "0.9", not a number"``
    for the first value that is not an int or float (booleans and strings included)."""
    if set(map(type, values)) <= {int, float}:
        return np.fromiter(values, np.float64, len(values))
    for i, v in enumerate(values):
        if not _is_number(v):
            raise InputError(f"{where(i)}: {field} is {_show(v)}, not a number")
    return np.array(values, dtype=np.float64)

"""COCOeval maxDets: one rule for the job spec and the evaluation."""

from __future__ import annotations

import pytest

from sparse_rcnn.platform.errors import PlatformError
from sparse_rcnn.platform.evaluation.max_dets import MaxDetsError, check_max_dets


def test_valid_lists_are_normalised_to_int_tuples():
    assert check_max_dets([1, 10, 100]) == (1, 10, 100)
    assert check_max_dets((100.0, 300, 1000)) == (100, 300, 1000)


@pytest.mark.parametrize(
    ("max_dets", "message"),
    [
        ([100, 10, 1], "max_dets must be three increasing positive ints, got [100, 10, 1]"),
        ([1, 10, 100.5], "max_dets must be three increasing positive ints, got [1, 10, 100.5]"),
        ([True, 10, 100], "max_dets must be three increasing positive ints, got [True, 10, 100]"),
        ([10, 100], "max_dets must be three increasing positive ints, got [10, 100]"),
        (
            [1, 10, 50],
            "max_dets must contain 100: COCOeval reports AP at maxDets=100, got [1, 10, 50]",
        ),
    ],
)
def test_invalid_lists_are_a_platform_error(max_dets, message):
    with pytest.raises(MaxDetsError) as info:
        check_max_dets(max_dets)
    assert str(info.value) == message
    assert isinstance(info.value, PlatformError) and isinstance(info.value, ValueError)

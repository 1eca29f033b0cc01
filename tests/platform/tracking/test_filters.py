"""MLflow filter strings: a value can never close its quotes and add a clause of its own."""

from __future__ import annotations

import pytest
from mlflow.utils.search_utils import SearchUtils

from sparse_rcnn.platform.tracking.filters import FilterValueError, all_of, tag_equals


@pytest.mark.parametrize(
    "value",
    ["s0-all-r1", "x' and tags.`study.role` = 'parent", "it's", 'say "hi"', "a\\b", "%_*"],
)
def test_a_value_parses_back_as_exactly_that_value(value):
    clauses = SearchUtils.parse_search_filter(
        all_of(tag_equals("study.id", value), tag_equals("study.role", "trial"))
    )
    assert clauses == [
        {"type": "tag", "key": "study.id", "comparator": "=", "value": value},
        {"type": "tag", "key": "study.role", "comparator": "=", "value": "trial"},
    ]


def test_a_value_with_both_quotes_is_refused():
    with pytest.raises(FilterValueError) as e:
        tag_equals("study.id", "a'b\"c")
    assert str(e.value) == (
        "MLflow filter value 'a\\'b\"c' holds both kinds of quote; MLflow cannot search for it"
    )


def test_a_value_ending_in_a_backslash_is_refused():
    with pytest.raises(FilterValueError) as e:
        tag_equals("study.id", "x\\")
    assert str(e.value) == (
        "MLflow filter value 'x\\\\' ends in a backslash; MLflow cannot search for it"
    )

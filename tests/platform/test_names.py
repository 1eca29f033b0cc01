"""The name rule for ids that become paths or URL parts, and paths kept under their root."""

from __future__ import annotations

import pytest

from sparse_rcnn.platform.errors import PlatformError
from sparse_rcnn.platform.names import InvalidName, PathEscape, check_name, path_under

RULE = (
    "use letters, digits, '_', '.' and '-', starting with a letter or digit, without '..', "
    "at most 200 characters"
)


@pytest.mark.parametrize("good", ["a", "tiny-lr-20261129-101500", "r50_fpn.1x", "0", "a.b-c_d"])
def test_names_that_follow_the_rule_pass(good):
    assert check_name("study id", good) == good


@pytest.mark.parametrize(
    "bad",
    ["..", ".", "../x", "a/b", "/abs", "a..b", ".hidden", "-rm", "_x", "a b", "a\\b", "a\x00",
     "x%2F..", "é", "a:b", "a'b", 'a"b'],
)  # fmt: skip
def test_names_that_could_escape_are_refused_naming_field_and_value(bad):
    with pytest.raises(InvalidName) as e:
        check_name("submission id", bad)
    assert str(e.value) == f"submission id {bad!r} is not a valid name; {RULE}"
    assert isinstance(e.value, PlatformError)


def test_empty_long_and_non_string_names_are_refused():
    with pytest.raises(InvalidName, match=r"^study id '' must not be empty$"):
        check_name("study id", "")
    with pytest.raises(InvalidName, match=r"is 201 characters long"):
        check_name("study id", "a" * 201)
    with pytest.raises(InvalidName, match=r"^run name 3 must be a string, got int$"):
        check_name("run name", 3)


def test_path_under_keeps_paths_inside_the_root_symlinks_included(tmp_path):
    root = tmp_path / "studies"
    root.mkdir()
    (root / "mine").mkdir()
    assert path_under(root, "mine", "study id") == (root / "mine").resolve()
    assert path_under(root, "not-yet", "study id") == (root / "not-yet").resolve()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(PathEscape) as e:
        path_under(root, "link", "study id")
    assert str(e.value) == (
        f"study id 'link' resolves to {outside.resolve()}, outside {root.resolve()}; refused"
    )
    with pytest.raises(InvalidName):
        path_under(root, "../outside", "study id")

"""Output files: locations checked before the work, atomic replacement, no temporary file left
on any failure path."""

from __future__ import annotations

import pytest

from sparse_rcnn.platform.errors import OutputPathError, PlatformError
from sparse_rcnn.platform.output_files import atomic_write, check_output_file, check_output_folder


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")

    def write(f):
        f.write(b"half")
        raise KeyboardInterrupt  # Ctrl-C in the middle of the write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, write)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_write_replaces_the_file_and_creates_the_parent_when_asked(tmp_path):
    target = tmp_path / "a" / "b" / "out.bin"
    atomic_write(target, lambda f: f.write(b"new"), create_parent=True)
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]


def test_refused_locations(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    cases = {
        tmp_path / "d": f"--out {tmp_path / 'd'} is a directory; give a file name",
        tmp_path
        / "f"
        / "o": f"--out {tmp_path / 'f' / 'o'}: {tmp_path / 'f'} is a file, not a folder",
        tmp_path
        / "n"
        / "o": f"--out {tmp_path / 'n' / 'o'}: folder {tmp_path / 'n'} does not exist",
    }
    for path, message in cases.items():
        with pytest.raises(OutputPathError) as e:
            check_output_file(path, "--out")
        assert str(e.value) == message
    with pytest.raises(OutputPathError, match="is a file, not a folder"):
        check_output_folder(tmp_path / "f")
    assert check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"


def test_output_path_errors_are_platform_errors_and_os_errors():
    assert issubclass(OutputPathError, PlatformError) and issubclass(OutputPathError, OSError)

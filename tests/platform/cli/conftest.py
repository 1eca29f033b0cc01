"""What every bad-input test of a command asserts: exit status 2, exactly one line on stderr,
no traceback."""

from __future__ import annotations

import pytest

from sparse_rcnn.platform.cli.main import main


@pytest.fixture
def cli_error(capsys):
    """``cli_error(*argv)`` runs ``sparse-rcnn *argv``, asserts exit status 2 and a single
    stderr line ``sparse-rcnn CMD: error: ...``, and returns the message after ``error: ``."""

    def run(*argv: object) -> str:
        rc = main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert "Traceback" not in err
        lines = err.splitlines()
        prefix = f"sparse-rcnn {argv[0]}: error: "
        assert len(lines) == 1 and lines[0].startswith(prefix), err
        return lines[0].removeprefix(prefix)

    return run

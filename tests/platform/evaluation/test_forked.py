"""Forked parts: the child's result when it gives one, this process's own work when not."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from sparse_rcnn.platform.evaluation import forked
from sparse_rcnn.platform.evaluation.forked import Forked, forked_map

pytestmark = pytest.mark.skipif(not forked.can_fork(), reason="fork is used on Linux only")
PARENT = os.getpid()


def _where(scale: float) -> tuple[int, np.ndarray]:
    return os.getpid(), np.arange(300_000) * scale  # ~2.4 MB: more than a pipe holds


def _fails_in_a_child() -> int:
    if os.getpid() != PARENT:
        raise RuntimeError("only in the child")
    return 7


def _dies_in_a_child() -> int:
    if os.getpid() != PARENT:
        os.kill(os.getpid(), signal.SIGKILL)
    return 8


def _sleeps(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def test_a_childs_result_comes_back_whole():
    part = Forked(_where, 0.5)
    pid, values = part.result()
    assert pid != PARENT  # computed by the child
    np.testing.assert_array_equal(values, np.arange(300_000) * 0.5)


def test_a_child_that_raises_or_dies_has_its_part_computed_here():
    assert Forked(_fails_in_a_child).result() == 7
    assert Forked(_dies_in_a_child).result() == 8


def test_an_error_of_the_work_itself_is_raised_here():
    def bad() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        Forked(bad).result()


def test_cancel_stops_and_reaps_the_child():
    part = Forked(_sleeps, 30)
    pid = part._pid
    start = time.monotonic()
    part.cancel()
    assert time.monotonic() - start < 5
    with pytest.raises(ChildProcessError):  # reaped: no zombie left behind
        os.waitpid(pid, os.WNOHANG)


def test_forked_map_keeps_the_order_and_runs_the_first_part_here():
    out = forked_map(_where, [(1.0,), (2.0,), (3.0,)])
    assert out[0][0] == PARENT and {out[1][0], out[2][0]}.isdisjoint({PARENT})
    for (_, values), scale in zip(out, (1.0, 2.0, 3.0), strict=True):
        assert values[-1] == 299_999 * scale


def test_forked_map_stops_the_children_when_its_own_part_fails():
    def first_fails(seconds: float) -> int:
        if seconds == 0:
            raise ValueError("first part")
        return _sleeps(seconds)

    start = time.monotonic()
    with pytest.raises(ValueError, match="first part"):
        forked_map(first_fails, [(0,), (30,)])
    assert time.monotonic() - start < 5


def test_without_fork_everything_runs_here(monkeypatch):
    monkeypatch.setattr(forked, "can_fork", lambda: False)
    assert Forked(_where, 1.0).result()[0] == PARENT

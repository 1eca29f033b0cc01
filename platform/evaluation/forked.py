"""Part of a computation run in a forked copy of this process, its result sent back by pipe.

``sparse-rcnn eval`` spends its time in Python-level work that holds the GIL (msgspec decoding
of the results file, the matching's many numpy steps), so threads cannot use a second core;
forked processes can. A fork shares the parent's memory copy-on-write, so inputs (the mapped
file, the decoded arrays) cost nothing to hand over; only the result comes back, pickled
through a pipe (~15 MB for half of a val2017-sized results file, ~10 ms).

Forking is opt-in (``workers > 1`` at the call sites) and is used only where the process is
known to be plain: the ``eval`` command. A process with its own threads (a training job with
torch's pools, Ray's and MLflow's threads) keeps ``workers=1``: fork copies only the calling
thread, and a lock another thread held at that moment stays held in the child.

Nothing depends on a child succeeding: a child that raises, is killed or sends nothing has its
part computed again here, so every error is raised in this process, with its usual message.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import sys
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_MISSING = object()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def can_fork() -> bool:
    """Whether :class:`Forked` runs work in a child: on Linux only (macOS's system libraries
    are not safe to use after fork, and Windows has no fork)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


class Forked(Generic[T]):
    """``fn(*args)``, started now in a forked child where possible; :meth:`result` gives it.

    The caller must end it with :meth:`result` or :meth:`cancel` (``with`` does the latter on
    the way out): until the parent reads it, a child with a large result waits on the pipe.
    """

    def __init__(self, fn: Callable[..., T], *args: Any):
        self._fn, self._args = fn, args
        self._pid: int | None = None
        self._read: int | None = None
        if not can_fork():
            return
        read, write = os.pipe()
        if hasattr(fcntl, "F_SETPIPE_SZ"):
            # 1 MiB instead of 64 KiB: a few dozen hand-overs between the processes instead of
            # hundreds for a 15 MB result. The kernel may refuse (a lower per-user limit).
            try:
                fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, 1 << 20)
            except OSError:
                pass
        pid = os.fork()
        if pid == 0:  # the child: compute, send, and leave without running the parent's exits
            code = 1
            try:
                os.close(read)
                value = fn(*args)
                with open(write, "wb") as out:
                    pickle.dump(value, out, protocol=pickle.HIGHEST_PROTOCOL)
                code = 0
            except BaseException:  # noqa: BLE001 - the parent computes the part again
                pass
            finally:
                os._exit(code)
        os.close(write)
        self._pid, self._read = pid, read

    def result(self) -> T:
        """The child's result, or ``fn(*args)`` computed here if the child gave none."""
        value: Any = _MISSING
        if self._pid is not None:
            try:
                with open(self._read, "rb", closefd=False) as inp:
                    value = pickle.load(inp)
            except (EOFError, OSError, pickle.UnpicklingError):
                value = _MISSING
            if self._finish() != 0:
                value = _MISSING
        if value is _MISSING:
            value = self._fn(*self._args)
        return value

    def cancel(self) -> None:
        """Stop the child (if still running) and forget its result."""
        if self._pid is not None:
            try:
                os.kill(self._pid, 9)
            except ProcessLookupError:
                pass
            self._finish()

    def _finish(self) -> int:
        """Close the pipe and reap the child; its exit status (-1 if it was killed)."""
        os.close(self._read)
        pid, self._pid, self._read = self._pid, None, None
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else -1

    def __enter__(self) -> Forked[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


def forked_map(fn: Callable[..., T], parts: list[tuple]) -> list[T]:
    """``[fn(*p) for p in parts]``: the first part here, each other one in a forked child."""
    children = [Forked(fn, *p) for p in parts[1:]]
    try:
        first = fn(*parts[0]) if parts else None
        return ([first] if parts else []) + [c.result() for c in children]
    finally:
        for c in children:
            c.cancel()

"""Fault injection for tests of recovery: fail once at a chosen point of training.

``SPARSE_RCNN_FAIL_ONCE=EPOCH:ITERATION:MARKER`` makes the first process that reaches
``epoch >= EPOCH`` and ``iteration >= ITERATION`` on rank 0 create ``MARKER`` and raise; a
restarted run finds the marker and goes on. Unset (always, outside tests) it does nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "SPARSE_RCNN_FAIL_ONCE"


class InjectedFailure(RuntimeError):
    pass


def maybe_fail(epoch: int, iteration: int) -> None:
    spec = os.environ.get(ENV)
    if not spec or os.environ.get("RANK", "0") != "0":
        return
    at_epoch, at_iter, marker = spec.split(":", 2)
    if epoch >= int(at_epoch) and iteration >= int(at_iter) and not Path(marker).exists():
        Path(marker).write_text(f"failed at epoch {epoch} iteration {iteration}\n")
        raise InjectedFailure(f"injected failure at epoch {epoch}, iteration {iteration}")

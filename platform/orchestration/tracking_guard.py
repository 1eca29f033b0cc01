"""Stopping a run whose tracking server stays away: at a checkpoint, never in between.

Rank 0 logs through an :class:`~sparse_rcnn.platform.tracking.outbox.OutboxLogger`, which never
holds training up while the server is unreachable. :class:`StopWhenTrackingLost` wraps the
engine's reporter: right after rank 0 commits a checkpoint it asks the logger whether its
writes have waited past the bound (``SPARSE_RCNN_TRACKING_OUTAGE_S``), every rank learns the
answer (one broadcast per epoch end), and all raise :class:`TrackingUnavailable` together. The
run thus stops with its newest checkpoint just written and its metrics in the outbox: nothing
is lost, and resuming the job trains on and delivers them.
"""

from __future__ import annotations

from typing import Any

from sparse_rcnn.platform.engine.distributed import DistContext
from sparse_rcnn.platform.engine.loop import Reporter
from sparse_rcnn.platform.tracking.outbox import OutboxLogger, TrackingUnavailable


class StopWhenTrackingLost:
    """The engine's Reporter: ``inner``'s, plus the stop described in the module doc.
    ``logger``: rank 0's outbox logger (None on the other ranks)."""

    def __init__(self, inner: Reporter, logger: OutboxLogger | None, dist: DistContext):
        self.inner, self.logger, self.dist = inner, logger, dist

    def latest_checkpoint(self) -> dict[str, Any] | None:
        return self.inner.latest_checkpoint()

    def report(self, metrics: dict[str, float], checkpoint: dict[str, Any] | None) -> None:
        self.inner.report(metrics, checkpoint)
        error = None
        if self.dist.is_main and checkpoint is not None and self.logger is not None:
            error = self.logger.outage_error()
        error = self.dist.broadcast(error)
        if error is not None:
            raise TrackingUnavailable(f"training stopped after epoch {int(metrics['epoch']) + 1}"
                                      f" (its checkpoint is written): {error}")  # fmt: skip

"""What the CLI prints at the end of a run."""

from __future__ import annotations

import shlex

from sparse_rcnn.platform.redact import redact_uri
from sparse_rcnn.platform.tracking.store import embedded_uri


def metrics_table(metrics: dict[str, float]) -> str:
    """``metrics`` in AP points; a metric absent for this run (no object of its size) is not
    in the dict and not printed."""
    return "\n".join(f"  {k:<6} {v:6.2f}" for k, v in metrics.items())


def ui_command(uri: str) -> str:
    if uri == embedded_uri():
        return "sparse-rcnn ui"
    return f"open {shlex.quote(redact_uri(uri))} in a browser"


def print_outcome(outcome) -> None:
    print(f"MLflow run {outcome.run_id} FINISHED ({redact_uri(outcome.tracking_uri)})")
    if outcome.metrics:
        print("validation box metrics (AP points):")
        print(metrics_table(outcome.metrics))
    print(f"browse it: {ui_command(outcome.tracking_uri)}")

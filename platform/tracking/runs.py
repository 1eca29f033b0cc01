"""Creating, logging to and closing MLflow runs.

The driver creates the run before any worker starts (:func:`create_run`) and passes its id;
rank 0 logs into it with :class:`RunLogger`; the driver closes it (:func:`finish_run`). A
worker-group restart reopens the same run, so a run never splits in two, and no run stays
RUNNING after a crash.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

from sparse_rcnn.platform.redact import redact
from sparse_rcnn.platform.tracking import names
from sparse_rcnn.platform.tracking.store import embedded_artifact_root, embedded_uri

_PARAM_VALUE_MAX = 6000


def client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri)


def ensure_experiment(uri: str, name: str) -> str:
    """The experiment's id, creating it (with artifacts next to the embedded store when the
    store is embedded) if needed."""
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = None
    if uri == embedded_uri():
        location = (embedded_artifact_root() / name).as_uri()
    return c.create_experiment(name, artifact_location=location)


def git_commit() -> str:
    """This code's commit: ``$SPARSE_RCNN_GIT_COMMIT`` (set by ``submit`` for the shipped copy,
    which is no git checkout), else ``git rev-parse HEAD``, else "unknown"."""
    if os.environ.get("SPARSE_RCNN_GIT_COMMIT"):
        return os.environ["SPARSE_RCNN_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )  # fmt: skip
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name()}"
    return f"cpu {platform.machine()} ({torch.get_num_threads()} threads)"


SUBMISSION_ENV = "SPARSE_RCNN_SUBMISSION_ID"


def submission_id() -> str | None:
    """The Ray Jobs submission id this process works for (what ``sparse-rcnn jobs list``
    shows), or None outside a submitted job. Ray gives it to the job's entrypoint in
    ``RAY_JOB_CONFIG_JSON_ENV_VAR``; it is then kept in ``SPARSE_RCNN_SUBMISSION_ID``, which
    the platform forwards to its trial and worker processes like every ``SPARSE_RCNN_*``."""
    import json

    found = os.environ.get(SUBMISSION_ENV)
    if found:
        return found
    try:
        config = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
        found = (config.get("metadata") or {}).get("job_submission_id")
    except (json.JSONDecodeError, AttributeError):
        found = None
    if found:
        os.environ[SUBMISSION_ENV] = str(found)
    return str(found) if found else None


def create_run(
    uri: str,
    experiment: str,
    run_name: str,
    params: dict[str, Any],
    tags: dict[str, str] | None = None,
    spec_yaml: str | None = None,
    parent_run_id: str | None = None,
) -> str:
    """Create a RUNNING run with ``params`` (values stringified, long ones truncated; ``None``
    values are not logged: an unset option is not a value) and tags; returns its id.
    Credentials in URIs are masked in params, tags and the spec artifact."""
    c = client(uri)
    all_tags = {names.TAG_GIT_COMMIT: git_commit(), names.TAG_HARDWARE: hardware(), **(tags or {})}
    all_tags = {k: redact(v) for k, v in all_tags.items()}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = c.create_run(ensure_experiment(uri, experiment), run_name=run_name, tags=all_tags)
    run_id = run.info.run_id
    c.log_batch(
        run_id,
        params=[
            Param(k, redact(str(v))[:_PARAM_VALUE_MAX])
            for k, v in sorted(params.items())
            if v is not None
        ],
    )
    if spec_yaml is not None:
        c.log_text(run_id, redact(spec_yaml), names.ARTIFACT_SPEC)
    return run_id


def finish_run(uri: str, run_id: str, status: str, error: str | None = None) -> None:
    """Mark the run FINISHED, FAILED or KILLED; a failure's message goes into a tag and an
    ``error.txt`` artifact."""
    c = client(uri)
    if error:
        error = redact(error)
        c.set_tag(run_id, names.TAG_ERROR, error[:5000])
        c.log_text(run_id, error, "error.txt")
    c.set_terminated(run_id, status=RunStatus.to_string(getattr(RunStatus, status)))


def run_status(uri: str, run_id: str) -> str:
    return client(uri).get_run(run_id).info.status


class RunLogger:
    """Rank 0's view of the run: batched metrics, evaluation metrics at step = epoch,
    detections and checkpoints as artifacts. Implements the engine's ``MetricsLogger``."""

    def __init__(self, uri: str, run_id: str):
        self.uri, self.run_id = uri, run_id
        self.client = client(uri)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        import time

        ts = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()]
        )

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """Evaluation metrics at step ``epoch``. A metric that does not exist for this run is
        not logged: COCO's -1 ("no object of this size", e.g. APl on small-object data) and NaN
        would otherwise plot as real values."""
        kept = {names.EVAL_PREFIX + k: v for k, v in metrics.items() if math.isfinite(v) and v >= 0}
        if kept:
            self.log_metrics(kept, step=epoch)

    def log_detections(self, dets: Any, epoch: int) -> None:
        from sparse_rcnn.platform.evaluation.detections import save_detections

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"val_detections_epoch{epoch}.parquet"
            save_detections(dets, path)
            self.client.log_artifact(self.run_id, str(path), names.ARTIFACT_DETECTIONS_DIR)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_image(self, image: Any, key: str, step: int) -> None:
        """An (H, W, 3) uint8 image (or PIL image) under ``key`` at ``step`` (the epoch for
        evaluation pictures), so the UI's image view steps through epochs."""
        self.client.log_image(self.run_id, image, key=key, step=step)

    def log_png(self, data: bytes, artifact_file: str) -> None:
        """PNG bytes as the artifact ``artifact_file`` (folders in the name are kept)."""
        path = Path(artifact_file)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / path.name
            local.write_bytes(data)
            parent = str(path.parent) if str(path.parent) != "." else None
            self.client.log_artifact(self.run_id, str(local), parent)

    def set_note(self, markdown: str) -> None:
        """The run's description (shown on its Overview page)."""
        self.client.set_tag(self.run_id, names.TAG_NOTE, markdown)

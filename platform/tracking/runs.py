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
_TAG_VALUE_MAX = 5000  # MLflow servers refuse longer tag values (8000 on SQL stores)


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


class RunLogger:
    """Rank 0's view of the run: batched metrics, evaluation metrics at step = epoch,
    detections and checkpoints as artifacts. Implements the engine's ``MetricsLogger``.

    ``write_once`` (the training worker's logger): every metric, and every image key, is
    written at most once per step, across restarts too. A worker-group restart resumes from
    the last committed checkpoint, which can be older than what the run already holds: the
    engine logs an epoch's evaluation before ``reporter.report`` commits that epoch's
    checkpoint, and every iteration after the checkpoint is trained and logged again. MLflow
    cannot update or delete a logged value (a second one at the same step is appended and
    plotted beside it), so this logger drops values instead: per metric key it learns the last
    step the run holds (one ``get_metric_history`` the first time it writes a key the run
    already has; images: one listing of ``images/``), and skips any value at a step up to that
    one. The values kept are those logged first; a ``deterministic`` run reproduces them on the
    re-run, otherwise they differ from the re-run by non-deterministic kernels' noise only.
    Without ``write_once`` a value logged again at a step is appended, and MLflow shows the
    newest as the metric's latest (a study report's summary at step 0 is updated that way).
    """

    def __init__(self, uri: str, run_id: str, write_once: bool = False):
        self.uri, self.run_id, self.write_once = uri, run_id, write_once
        self.client = client(uri)
        self._existing: set[str] | None = None  # metric keys the run had when first written to
        self._last_step: dict[str, int] = {}  # per metric key: the last step the run holds
        self._image_steps: dict[str, int] | None = None  # per image file key, the same

    def _last_logged(self, key: str) -> int:
        if not self.write_once:
            return -1
        if key not in self._last_step:
            if self._existing is None:
                self._existing = set(self.client.get_run(self.run_id).data.metrics)
            history = []
            if key in self._existing:  # a fresh run costs one get_run, no history calls
                history = self.client.get_metric_history(self.run_id, key)
            self._last_step[key] = max((m.step for m in history), default=-1)
        return self._last_step[key]

    def forget_logged(self) -> None:
        """Forget what the run was learnt to hold: the next write asks the server again. After
        a request that failed, the server may or may not have stored it."""
        self._existing, self._image_steps = None, None
        self._last_step.clear()

    def log_metrics(
        self, metrics: dict[str, float], step: int, timestamp_ms: int | None = None
    ) -> None:
        """``metrics`` at ``step``, stamped ``timestamp_ms`` (default: now); with
        ``write_once``, a key the run already holds at this or a later step is skipped (see
        the class doc)."""
        import time

        ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        new = [Metric(k, float(v), ts, step) for k, v in metrics.items()
               if step > self._last_logged(k)]  # fmt: skip
        if not new:
            return
        self.client.log_batch(self.run_id, metrics=new)
        for m in new:
            self._last_step[m.key] = step

    def log_epoch(
        self, epoch: int, metrics: dict[str, float], timestamp_ms: int | None = None
    ) -> None:
        """Evaluation metrics at step ``epoch``. A metric that does not exist for this run is
        not logged: COCO's -1 ("no object of this size", e.g. APl on small-object data) and NaN
        would otherwise plot as real values. With ``write_once``, an epoch already logged
        (before a restart) is not logged again."""
        kept = {names.EVAL_PREFIX + k: v for k, v in metrics.items() if math.isfinite(v) and v >= 0}
        if kept:
            self.log_metrics(kept, step=epoch, timestamp_ms=timestamp_ms)

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
        evaluation pictures), so the UI's image view steps through epochs. With ``write_once``,
        skipped when the run already holds an image of ``key`` at this or a later step."""
        file_key = key.replace("/", "~")  # how MLflow 3 names the file: images/KEY+step+N+...
        if self.write_once and step <= self._logged_image_steps().get(file_key, -1):
            return
        self.client.log_image(self.run_id, image, key=key, step=step)
        if self._image_steps is not None:
            self._image_steps[file_key] = step

    def _logged_image_steps(self) -> dict[str, int]:
        """``{file key: last step}`` of the run's stepped images, listed once. A file name not
        in MLflow 3's ``KEY+step+N+timestamp+...`` form is ignored (its image logs again)."""
        if self._image_steps is None:
            self._image_steps = {}
            for f in self.client.list_artifacts(self.run_id, "images"):
                parts = f.path.rsplit("/", 1)[-1].split("+")
                if len(parts) > 2 and parts[1] == "step" and parts[2].isdigit():
                    last = self._image_steps.get(parts[0], -1)
                    self._image_steps[parts[0]] = max(last, int(parts[2]))
        return self._image_steps

    def log_png(self, data: bytes, artifact_file: str) -> None:
        """PNG bytes as the artifact ``artifact_file`` (folders in the name are kept)."""
        path = Path(artifact_file)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / path.name
            local.write_bytes(data)
            parent = str(path.parent) if str(path.parent) != "." else None
            self.client.log_artifact(self.run_id, str(local), parent)

    def set_tags(self, tags: dict[str, str]) -> None:
        """Set (or overwrite) run tags; a value past MLflow's limit is cut, marked ``...``."""
        for key, value in tags.items():
            value = value if len(value) <= _TAG_VALUE_MAX else value[: _TAG_VALUE_MAX - 3] + "..."
            self.client.set_tag(self.run_id, key, value)

    def set_note(self, markdown: str) -> None:
        """The run's description (shown on its Overview page)."""
        self.client.set_tag(self.run_id, names.TAG_NOTE, markdown)

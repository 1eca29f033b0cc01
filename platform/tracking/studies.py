"""MLflow side of seed-variance studies: one parent run per study, one nested child run per
trial, found again by tags so that a resumed study never creates a second run for a trial."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mlflow.entities import RunStatus

from sparse_rcnn.platform.tracking import names
from sparse_rcnn.platform.tracking.filters import all_of, tag_equals
from sparse_rcnn.platform.tracking.runs import client, create_run, ensure_experiment


def create_study_run(
    uri: str, experiment: str, study_id: str, params: dict[str, Any], spec_yaml: str
) -> str:
    """The study's parent run (RUNNING), with the study spec as params and artifact."""
    run_id = create_run(
        uri,
        experiment,
        study_id,
        params,
        tags={names.TAG_STUDY_ID: study_id, names.TAG_STUDY_ROLE: "parent"},
    )
    client(uri).log_text(run_id, spec_yaml, "study_spec.yaml")
    return run_id


def reopen_run(uri: str, run_id: str) -> None:
    """Mark a (KILLED, FAILED or stale RUNNING) run RUNNING again, e.g. a resumed study."""
    client(uri).update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))


def find_trial_run(
    uri: str, experiment: str, study_id: str, trial_key: str
) -> tuple[str, dict[str, Any] | None] | None:
    """``(run_id, result)`` of the trial's child run, ``result`` being what
    :func:`mark_trial_done` stored (None while unfinished); None when no run exists."""
    c = client(uri)
    runs = c.search_runs(
        [ensure_experiment(uri, experiment)],
        filter_string=all_of(
            tag_equals(names.TAG_STUDY_ID, study_id), tag_equals(names.TAG_STUDY_TRIAL, trial_key)
        ),
        max_results=10,
    )
    if not runs:
        return None
    if len(runs) > 1:
        raise RuntimeError(f"study {study_id}: {len(runs)} MLflow runs for trial {trial_key}")
    raw = runs[0].data.tags.get(names.TAG_STUDY_RESULT)
    return runs[0].info.run_id, (json.loads(raw) if raw else None)


def trial_runs(uri: str, experiment: str, study_id: str) -> list[Any]:
    """Every child run of the study (``mlflow.entities.Run``), any status."""
    return client(uri).search_runs(
        [ensure_experiment(uri, experiment)],
        filter_string=all_of(
            tag_equals(names.TAG_STUDY_ID, study_id), tag_equals(names.TAG_STUDY_ROLE, "trial")
        ),
        max_results=10000,
    )


def running_trial_runs(uri: str, experiment: str, study_id: str) -> list[str]:
    return [
        r.info.run_id for r in trial_runs(uri, experiment, study_id) if r.info.status == "RUNNING"
    ]


def mark_trial_done(uri: str, run_id: str, result: dict[str, Any]) -> None:
    """Store the trial's result on its run; a resumed study reads it instead of re-running."""
    client(uri).set_tag(run_id, names.TAG_STUDY_RESULT, json.dumps(result))


def eval_history(uri: str, run_id: str, metrics: tuple[str, ...]) -> dict[str, list[list[float]]]:
    """``{metric: [[epoch, value], ...]}`` of the run's validation metrics, in epoch order, one
    point per epoch. ``RunLogger`` writes an epoch once; a run with two values at an epoch
    (logged before and after a restart by an older version) gives the later one, the value of
    the attempt that went on."""
    c = client(uri)
    out = {}
    for m in metrics:
        hist = c.get_metric_history(run_id, names.EVAL_PREFIX + m)
        last: dict[int, float] = {}
        for h in sorted(hist, key=lambda h: (h.step, h.timestamp)):
            last[h.step] = float(h.value)
        out[m] = [[float(step), value] for step, value in sorted(last.items())]
    return out


def download_detections(uri: str, run_id: str, dest: str | Path) -> Path | None:
    """The run's last validation detections (Parquet), downloaded under ``dest``; None if the
    run logged none."""
    c = client(uri)
    files = [
        f.path
        for f in c.list_artifacts(run_id, names.ARTIFACT_DETECTIONS_DIR)
        if f.path.endswith(".parquet")
    ]
    if not files:
        return None

    def epoch(p: str) -> int:
        digits = "".join(ch for ch in Path(p).stem.rsplit("epoch", 1)[-1] if ch.isdigit())
        return int(digits or 0)

    latest = max(files, key=epoch)
    Path(dest).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per trial
    return Path(c.download_artifacts(run_id, latest, str(dest)))

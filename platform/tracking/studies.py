"""MLflow side of seed-variance studies: one parent run per study, one nested child run per
trial, found again by tags so that a resumed study never creates a second run for a trial."""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, RunStatus, RunTag

from sparse_rcnn.platform.tracking import names
from sparse_rcnn.platform.tracking.filters import all_of, tag_equals
from sparse_rcnn.platform.tracking.runs import (
    client,
    create_run,
    ensure_experiment,
    submission_id,
)


def create_study_run(
    uri: str, experiment: str, study_id: str, params: dict[str, Any], spec_yaml: str
) -> str:
    """The study's parent run (RUNNING), with the study spec as params and artifact."""
    run_id = create_run(
        uri,
        experiment,
        study_id,
        params,
        tags={
            names.TAG_STUDY_ID: study_id,
            names.TAG_STUDY_ROLE: "parent",
            # a submitted study: `jobs list` closes its runs if the job ends without doing so
            **({names.TAG_RAY_JOB_ID: sid} if (sid := submission_id()) else {}),
        },
    )
    client(uri).log_text(run_id, spec_yaml, "study_spec.yaml")
    return run_id


def trial_params(plan: dict[str, Any]) -> dict[str, Any]:
    """A trial run's study params: its setting label, randomness source and seed, so the UI's
    "group by study.setting" works without configuration."""
    return {
        names.PARAM_STUDY_SETTING: plan["setting_label"],
        names.PARAM_STUDY_SOURCE: plan["source"],
        names.PARAM_STUDY_SEED: plan["seed"],
    }


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
    run = runs[0]
    if run.data.tags.get(names.TAG_STUDY_DONE) == "true":
        return run.info.run_id, _trial_result(uri, run.info.run_id)
    legacy = run.data.tags.get(names.TAG_STUDY_RESULT_LEGACY)  # written by earlier versions
    return run.info.run_id, (json.loads(legacy) if legacy else None)


def _trial_result(uri: str, run_id: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = client(uri).download_artifacts(run_id, names.ARTIFACT_TRIAL_RESULT, tmp)
        return json.loads(Path(path).read_text())


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
    """Store the trial's result on its run (a JSON artifact, then the ``study.done`` tag); a
    resumed study reads it instead of re-running. The result is an artifact, not a tag: a JSON
    blob as a tag fills the UI's compare page."""
    c = client(uri)
    c.log_text(run_id, json.dumps(result, indent=1), names.ARTIFACT_TRIAL_RESULT)
    c.set_tag(run_id, names.TAG_STUDY_DONE, "true")


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


def setting_key(label: str, short: dict[str, str]) -> str:
    """A setting in metric and tag names: its label for people (``short``), made a name."""
    return names.label_key(short.get(label) or label)


def comparison_key(a: str, b: str, short: dict[str, str]) -> str:
    """``<a> vs <b>`` in the parent run's metric and tag names."""
    return f"{setting_key(a, short)} vs {setting_key(b, short)}"


def log_study_summary(
    uri: str, run_id: str, report: dict[str, Any], short: dict[str, str] | None = None
) -> None:
    """The report's headline numbers on the parent run, named by setting label, so the MLflow
    UI can chart, sort and compare studies without opening an artifact:

    - ``study/sigma``, ``study/seeds_per_arm_80`` ... (planning);
    - ``study/<setting>/mean|std|n`` per setting (``lr 0.005``: see ``names.label_key``);
    - ``study/<a> vs <b>/diff|ci_low|ci_high|p|p_holm|p_superiority`` per comparison, its
      interval the simultaneous one the verdict uses, and the verdict as the tag
      ``study.verdict.<a> vs <b>`` (a sequential study's: the verdict of its design);
    - the compute: ``study/cpu_hours``, ``study/gpu_hours``, per decided comparison
      (``study/cpu_hours_per_decided`` ...) and the estimate to decide the rest
      (``study/cpu_hours_to_decide`` ...), from the report's ``cost``;
    - the per-trial results as the table artifact ``trials.json`` (MLflow's table views).

    ``short`` maps full setting labels to the labels for people (``lr=0.005``)."""
    short = short or {}
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    p = report.get("power") or {}
    for k in ("sigma", "seeds_per_arm_80", "seeds_per_arm_90", "mde_80"):
        _put(metrics, f"{names.STUDY_PREFIX}{k}", p.get(k))
    for s in report.get("settings", []):
        for k in ("mean", "std", "n"):
            _put(metrics, f"{names.STUDY_PREFIX}{setting_key(s['setting'], short)}/{k}", s.get(k))
    for c in report.get("comparisons", []):
        name = comparison_key(c["a"], c["b"], short)
        ci = c.get("ci_simultaneous") or c.get("ci") or [None, None]
        values = {
            "diff": c.get("diff"),
            "ci_low": ci[0],
            "ci_high": ci[1],
            "p": c.get("p"),
            "p_holm": c.get("p_adjusted"),
            "p_superiority": c.get("p_superiority"),
        }
        for k, v in values.items():
            _put(metrics, f"{names.STUDY_PREFIX}{name}/{k}", v)
        tags[names.TAG_VERDICT_PREFIX + name] = str(c.get("verdict"))
    cost = report.get("cost") or {}
    for k in ("cpu_hours", "gpu_hours", "cpu_hours_per_decided", "gpu_hours_per_decided"):
        _put(metrics, f"{names.STUDY_PREFIX}{k}", cost.get(k))
    for unit in ("cpu_hours", "gpu_hours"):
        todo = [u[unit] for u in cost.get("undecided", []) if u.get(unit) is not None]
        if todo:
            _put(metrics, f"{names.STUDY_PREFIX}{unit}_to_decide", sum(todo))
    # A sequential study's verdict is the design's: the fixed-design one ignores the stopping.
    for c in (report.get("sequential") or {}).get("comparisons", []):
        tags[names.TAG_VERDICT_PREFIX + comparison_key(c["a"], c["b"], short)] = str(c["verdict"])
    c = client(uri)
    if metrics:
        c.log_batch(run_id, metrics=[Metric(k, v, int(time.time() * 1000), 0)
                                     for k, v in metrics.items()])  # fmt: skip
    for k, v in tags.items():
        c.set_tag(run_id, k, v)
    _log_trials_table(uri, run_id, report.get("per_trial", []), short)


def log_wave_decision(
    uri: str, run_id: str, entry: dict[str, Any], short: dict[str, str] | None = None
) -> None:
    """A sequential study's decision after one wave (``study_waves.decide_wave``) on its
    parent run, at step = wave: ``study/decided``, ``study/open``,
    ``study/seeds_per_setting``; per comparison ``study/<a> vs <b>/seq_diff``,
    ``seq_rci_low``, ``seq_rci_high`` (the repeated interval), ``seq_t`` and ``seq_boundary``
    (the statistic and the boundary it must reach); the tags ``study.wave`` and
    ``study.sequential.<a> vs <b>`` (the comparison's verdict so far)."""
    short = short or {}
    step = int(entry["wave"])
    metrics: dict[str, float] = {}
    _put(metrics, names.STUDY_DECIDED, len(entry["decided"]))
    _put(metrics, names.STUDY_OPEN, len(entry["open"]))
    _put(metrics, names.STUDY_WAVE_SEEDS, entry["seeds_per_setting"])
    tags = {names.TAG_WAVE: str(step)}
    for c in entry["comparisons"]:
        name = comparison_key(c["a"], c["b"], short)
        tags[names.TAG_SEQ_VERDICT_PREFIX + name] = str(c["verdict"])
        if c["stopped_wave"] is not None and c["stopped_wave"] < step:
            continue  # decided at an earlier wave: its path ends there
        rci = c.get("rci") or [None, None]
        values = (c.get("diff"), rci[0], rci[1], c.get("statistic"), c.get("boundary"))
        for key, v in zip(names.SEQ_METRICS, values, strict=True):
            _put(metrics, f"{names.STUDY_PREFIX}{name}/{key}", v)
    c = client(uri)
    stamp = int(time.time() * 1000)
    c.log_batch(
        run_id,
        metrics=[Metric(k, v, stamp, step) for k, v in metrics.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )


def _put(metrics: dict[str, float], name: str, value: Any) -> None:
    if value is not None and math.isfinite(float(value)):
        metrics[name] = float(value)


def _log_trials_table(
    uri: str, run_id: str, per_trial: list[dict[str, Any]], short: dict[str, str]
) -> None:
    """``trials.json`` through ``MlflowClient.log_table`` (which also registers it for the
    UI's artifact-compare view). log_table appends to an existing table, so a report computed
    again replaces the file with the same split-orient JSON instead."""
    import pandas as pd

    if not per_trial:
        return
    df = pd.DataFrame(
        {
            "trial": [t["trial"] for t in per_trial],
            "setting": [short.get(t["setting"]) or t["setting"] for t in per_trial],
            "source": [t["source"] for t in per_trial],
            "seed": [t.get("seed") for t in per_trial],
            "status": [t["status"] for t in per_trial],
            "value": [t.get("value") for t in per_trial],
            "test_se": [t.get("test_se") for t in per_trial],
            "test_ci_low": [(t.get("test_ci") or [None, None])[0] for t in per_trial],
            "test_ci_high": [(t.get("test_ci") or [None, None])[1] for t in per_trial],
        }
    )
    c = client(uri)
    if names.ARTIFACT_TRIALS_TABLE not in {a.path for a in c.list_artifacts(run_id)}:
        c.log_table(run_id, df, names.ARTIFACT_TRIALS_TABLE)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / names.ARTIFACT_TRIALS_TABLE
        df.to_json(path, orient="split", index=False)
        c.log_artifact(run_id, str(path))

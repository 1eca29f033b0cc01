"""Small hand-made studies for the dashboard tests: results rows as ``results.parquet`` holds
them (AP points), the real analysis JSON of those rows (AP points), and a finished study
(record, results, parent run) made without running one, for the real ``write_report``."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from sparse_rcnn.dashboards.report_text import analysis_json
from sparse_rcnn.platform.orchestration.results import write_results
from sparse_rcnn.platform.orchestration.study_record import RESULTS_FILE, StudyRecord, studies_root
from sparse_rcnn.platform.spec.study import load_study
from sparse_rcnn.platform.stats.analysis import analyze
from sparse_rcnn.platform.stats.table import Run
from sparse_rcnn.platform.tracking.studies import create_study_run

SETTINGS = ("lr=0.002", "lr=0.005", "lr=0.01")
# Final AP (points) per setting and replicate; the last trial of lr=0.01 failed.
FINAL = {
    "lr=0.002": (1.00, 1.20, 0.90, 1.10),
    "lr=0.005": (1.50, 1.70, 1.40, 1.65),
    "lr=0.01": (1.05, 1.18, 0.98, math.nan),
}
EPOCHS = (1, 2, 3)


def make_rows() -> list[dict]:
    rows = []
    for s in SETTINGS:
        for r, final in enumerate(FINAL[s]):
            ok = math.isfinite(final)
            history = [final * e / len(EPOCHS) for e in EPOCHS] if ok else []
            rows.append(
                {
                    "trial_key": f"s{SETTINGS.index(s)}-all-r{r}",  # the study's own keys
                    "wall_s": 900.0,  # 15 min of 1 CPU: 0.25 CPU-hours
                    "setting_label": s,
                    "source": "all",
                    "replicate": r,
                    "seed": 10 + r,
                    "status": "ok" if ok else "error",
                    "AP": final,
                    "eval_epochs": list(EPOCHS[: len(history)]),
                    "eval_AP": history,
                }
            )
    return rows


def make_report(rows: list[dict], image_bootstrap: bool = True) -> dict:
    runs = [
        Run(r["setting_label"], r["seed"], r["AP"], r["source"], r["replicate"],
            r["trial_key"])
        for r in rows
    ]  # fmt: skip
    reps = None
    if image_bootstrap:
        rng = np.random.default_rng(1)
        reps = {r.key: r.value + rng.normal(0, 0.1, 200) for r in runs if math.isfinite(r.value)}
    analysis = analyze(runs, metric="AP", unit="AP points (COCO metric x 100)", effect_size=0.3,
                       image_replicates=reps, min_runs=0, run_word="trial")  # fmt: skip
    return analysis_json(analysis)


def make_decompose_report() -> dict:
    rng = np.random.default_rng(3)
    runs = []
    spread = {"all": 0.4, "init": 0.3, "data_order": 0.15, "nondeterminism": 0.05}
    for s in ("lr=0.002", "lr=0.005"):
        for src, sd in spread.items():
            for r in range(4):
                runs.append(Run(s, r, 1.0 + rng.normal(0, sd), src, r, f"{s}-{src}-r{r}"))
    return analysis_json(analyze(runs, metric="AP", unit="AP points", effect_size=0.3))


@pytest.fixture
def rows() -> list[dict]:
    return make_rows()


@pytest.fixture
def report(rows) -> dict:
    return make_report(rows)


@pytest.fixture
def decompose_report() -> dict:
    return make_decompose_report()


def _finished_study(
    tmp_path: Path, uri: str, job: dict, rows: list[dict], study_id: str = "dash-test"
) -> StudyRecord:
    """Record, results and parent run of a 3-setting study whose trials are ``rows``."""
    experiment = "dashboards-study"
    job = {**job, "mlflow": {**job.get("mlflow", {}), "tracking_uri": uri,
                             "experiment": experiment}}  # fmt: skip
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(job))
    data = {"name": "dash", "job": "base.yaml", "seeds": 4, "bootstrap_replicates": 0,
            "vary": {"optimizer.lr": [0.002, 0.005, 0.01]}}  # fmt: skip
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    study = load_study(tmp_path / "study.yaml")
    spec = study.spec.model_dump(mode="json")
    parent = create_study_run(
        uri, experiment, study_id, {"study.name": "dash"}, yaml.safe_dump(spec)
    )
    folder = studies_root() / study_id
    folder.mkdir(parents=True)
    record = StudyRecord(study_id, spec, study.base_job, parent, uri, experiment, 2, time.time())
    record.save(folder)
    write_results([{**r, "study_id": study_id, "error": None} for r in rows], folder / RESULTS_FILE)
    return record


@pytest.fixture
def finished_study(tmp_path, small_job, state_dir):
    """Factory ``(tracking_uri, study_id="dash-test") -> StudyRecord`` of a finished 3 x 4 study:
    its record, results.parquet and parent run, ready for the real ``write_report``."""
    return lambda uri, study_id="dash-test": _finished_study(
        tmp_path, uri, small_job(), make_rows(), study_id
    )

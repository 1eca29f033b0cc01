"""A sequential study end to end on the local Ray and a real MLflow server: waves run only the
baseline and the settings still open, a close pair runs on to the last wave, the driver is
killed between waves and ``resume`` finishes the study without training any trial twice.

``close`` differs from the baseline only in a gradient clip of 1.0000000001 instead of 1.0,
the same float32 number, and with ``deterministic: true`` its trials equal the baseline's bit
for bit: paired differences of exactly 0 have no standard error, so no boundary is crossed and
the comparison stays open to the last wave, where it ends undecided. ``far`` (lr 1e-6, AP50
exactly 0) may or may not be decided after the first wave: the tiny model at test scale scores
AP50 0 on many seeds even when it trains (measured: 11.2, 0, 0 and 0.15 for four seeds, and 0
for every seed after memorising 8 images for 32 iterations), so no real training here gives a
pair whose separation is certain in seconds. The test checks that the driver did what its
recorded decisions say, whatever they were; that a separated pair stops at its first wave and
stays decided is checked on rows with known truth through the same ``decide_wave``
(test_study_waves.py), and the error rates by simulation (bench/sequential_sim.py).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from mlflow.tracking import MlflowClient

from sparse_rcnn.platform.orchestration.results import read_results
from sparse_rcnn.platform.orchestration.study import resume_study
from sparse_rcnn.platform.orchestration.study_report import write_report
from sparse_rcnn.platform.orchestration.study_waves import WAVES_FILE
from sparse_rcnn.platform.spec.study import load_study
from sparse_rcnn.platform.tracking import names

pytestmark = [pytest.mark.ray, pytest.mark.slow]

BASE = {"lr": 5e-3}
# The default clip (1.0) up to 1e-10: the same float32 number, so the same training.
CLOSE = {"lr": 5e-3, "clip_grad_norm": 1.0000000001}
FAR = {"lr": 1e-6}  # learns nothing: AP50 exactly 0
NAMES = ("base", "close", "far")


def _study_file(tmp_path, small_job, uri: str) -> str:
    job = small_job(**{
        "dataset.synthetic": {"images": 24, "seed": 0, "val_fraction": 0.34, "min_size": 96,
                              "max_size": 128, "difficulty": "easy"},
        "dataset.input_ratio": 0.1,
        "schedule": {"epochs": 3, "lr_steps": [2], "warmup_iters": 3},
        "eval_interval": 3,
        "deterministic": True,
        "mlflow.tracking_uri": uri,
        "mlflow.experiment": "study-seq",
    })  # fmt: skip
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(job))
    study = {
        "name": "seq", "job": "base.yaml", "design": "sequential",
        "seeds": {"initial": 2, "step": 1, "max": 3}, "spending": "pocock",
        "vary": {"optimizer": [BASE, CLOSE, FAR]}, "metric": "AP50", "alpha": 0.45,
        "bootstrap_replicates": 0,
    }  # fmt: skip
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return str(path)


def test_a_sequential_study_stops_the_separated_pair_and_resumes_after_a_driver_kill(
    small_job, mlflow_server, local_ray, state_dir, tmp_path
):
    path = _study_file(tmp_path, small_job, mlflow_server)
    labels = {s.label: n for s, n in zip(load_study(path).settings, NAMES, strict=True)}
    address = local_ray.get_runtime_context().gcs_address
    log_path = tmp_path / "driver.log"
    log = open(log_path, "w")  # noqa: SIM115
    driver = subprocess.Popen(
        [sys.executable, "-m", "sparse_rcnn.platform.cli.main", "study", path,
         "--address", address],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ),
    )  # fmt: skip
    deadline = time.monotonic() + 600
    waves_file = None
    try:
        while time.monotonic() < deadline and waves_file is None:
            time.sleep(1)
            assert driver.poll() is None, log_path.read_text()[-3000:]
            found = list((state_dir / "studies").glob(f"*/{WAVES_FILE}"))
            # Killed once wave 1 is decided and its line printed, before wave 2 ends.
            if found and "wave 1/2 (2 seeds" in log_path.read_text():
                waves_file = found[0]
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver dies between the waves
        driver.wait()
        log.close()
    assert waves_file is not None, "wave 1 was not decided before the deadline"
    console = log_path.read_text()
    assert "sequential, 3 settings" in console and "wave 1/2" in console
    (first,) = json.loads(waves_file.read_text())
    verdicts = {labels[c["a"]]: c for c in first["comparisons"]}
    assert verdicts["close"]["verdict"] == "open" and verdicts["close"]["diff"] == 0.0
    assert verdicts["close"]["statistic"] is None  # no standard error: nothing to cross
    far_open = verdicts["far"]["verdict"] == "open"
    assert far_open or verdicts["far"]["stopped_wave"] == 1
    assert [labels[a] for a in first["open"]] == ["close", "far"] if far_open else ["close"]
    assert first["decided"] == ([] if far_open else [verdicts["far"]["a"]])

    c = MlflowClient(mlflow_server)
    exp = c.get_experiment_by_name("study-seq")
    done_before = {
        r.data.tags["study.trial"]: r.info.end_time
        for r in c.search_runs([exp.experiment_id])
        if r.data.tags.get("study.done") == "true"
    }
    assert len(done_before) >= 6  # every wave-1 trial: 3 settings x 2 seeds

    study_id = waves_file.parent.name
    outcome = resume_study(study_id)
    assert outcome.finished

    runs = c.search_runs([exp.experiment_id], max_results=100)
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == outcome.parent_run_id]
    keys = sorted(k.data.tags["study.trial"] for k in kids)
    # Wave 2 ran the third seed of the baseline and of each setting open after wave 1 only.
    third = [0, 1, 2] if far_open else [0, 1]
    assert keys == sorted([f"s{s}-all-r{r}" for s in (0, 1, 2) for r in range(2)]
                          + [f"s{s}-all-r2" for s in third])  # fmt: skip
    assert all(k.info.status == "FINISHED" for k in kids)
    for k in kids:
        key = k.data.tags["study.trial"]
        if key in done_before:
            assert k.info.end_time == done_before[key], f"{key} was trained again"

    rows = read_results(outcome.results_path)
    assert {(r["trial_key"], r["wave"]) for r in rows} == {
        (k, 2 if k.endswith("r2") else 1) for k in keys
    }
    assert all(r["status"] == "ok" and math.isfinite(r["AP50"]) for r in rows)
    base = {r["replicate"]: r["AP50"] for r in rows if r["setting"] == 0}
    assert all(r["AP50"] == base[r["replicate"]] for r in rows if r["setting"] == 1)  # bitwise

    waves = json.loads(waves_file.read_text())
    assert [w["wave"] for w in waves] == [1, 2] and waves[1]["open"] == []
    second = {labels[c["a"]]: c for c in waves[1]["comparisons"]}
    assert second["close"]["verdict"] == "undecided" and second["close"]["seeds_used"] == 3
    if not far_open:  # a decision stands
        assert second["far"] == {**verdicts["far"]}
    assert second["far"]["verdict"] != "open"
    line = next(ln for ln in log_path.read_text().splitlines() if "wave 1/2 (2 seeds" in ln)
    assert line.endswith("-> next wave") and "open (+0.00" in line

    parent = c.get_run(outcome.parent_run_id)
    assert parent.info.status == "FINISHED"
    history = c.get_metric_history(parent.info.run_id, names.STUDY_OPEN)
    assert {m.step: m.value for m in history} == {1: len(first["open"]), 2: 0.0}
    decided = c.get_metric_history(parent.info.run_id, names.STUDY_DECIDED)
    answered = float(second["far"]["verdict"] in ("different", "equivalent"))  # close: undecided
    assert {m.step: m.value for m in decided} == {1: len(first["decided"]), 2: answered}
    assert parent.data.tags[names.TAG_WAVE] == "2"
    seq_tags = {k: v for k, v in parent.data.tags.items()
                if k.startswith(names.TAG_SEQ_VERDICT_PREFIX)}  # fmt: skip
    assert sorted(seq_tags.values()) == sorted([second["far"]["verdict"], "undecided"])
    diffs = c.get_metric_history(parent.info.run_id, next(
        k for k in parent.data.metrics if k.endswith("/seq_diff") and "clip" in k))  # fmt: skip
    assert {m.step: m.value for m in diffs} == {1: 0.0, 2: 0.0}  # the close pair's path

    report, md = write_report(study_id, log=False)
    seq = {labels[x["a"]]: x for x in report["sequential"]["comparisons"]}
    assert seq["far"]["verdict"] == second["far"]["verdict"]
    assert seq["close"]["verdict"] == "undecided"
    assert [look["wave"] for look in seq["close"]["looks"]] == [1, 2]
    assert report["cost"]["trials"] == len(rows) and report["cost"]["cpu_hours"] > 0
    assert report["cost"]["decided"] == int(second["far"]["verdict"] in ("different", "equivalent"))
    assert (md.parent / "figures" / "boundaries.png").is_file()

"""Seed studies end to end: Ray Tune over Ray Train runs on the local Ray, a real MLflow server,
the results table, the report, and resume after the driver is killed."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from sparse_rcnn.platform.orchestration.results import read_results
from sparse_rcnn.platform.orchestration.study import resume_study, start_study
from sparse_rcnn.platform.orchestration.study_record import StudyError, study_folder
from sparse_rcnn.platform.orchestration.study_report import write_report
from sparse_rcnn.platform.spec.study import load_study
from sparse_rcnn.platform.stats.summary import summarize

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def study_file(tmp_path, small_job, mlflow_server):
    """Factory: a study over the small job (1 worker, 2 epochs, evaluated each epoch)."""

    def make(experiment: str, **study) -> str:
        job = small_job(
            **{
                "mlflow.tracking_uri": mlflow_server,
                "mlflow.experiment": experiment,
                "eval_interval": 1,
            }
        )
        (tmp_path / "base.yaml").write_text(yaml.safe_dump(job))
        data = {"name": "t", "job": "base.yaml", "bootstrap_replicates": 200, **study}
        path = tmp_path / "study.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return str(path)

    return make


def _children(client, experiment, parent_id):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    return runs, kids


def test_a_2x3_study_has_a_parent_six_children_results_and_a_report(
    study_file, mlflow_server, local_ray, state_dir
):
    study = load_study(study_file("study-e2e", seeds=3, vary={"optimizer.lr": [1e-3, 3e-3]}))
    outcome = start_study(study)
    assert outcome.finished and outcome.concurrency == 2

    c = MlflowClient(mlflow_server)
    runs, kids = _children(c, "study-e2e", outcome.parent_run_id)
    assert len(runs) == 7 and len(kids) == 6
    parent = c.get_run(outcome.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["study.vary.optimizer.lr"] == "[0.001, 0.003]"
    assert parent.data.params["study.num_trials"] == "6"
    assert all(k.info.status == "FINISHED" for k in kids)
    assert sorted(k.data.tags["study.trial"] for k in kids) == sorted(
        f"s{s}-all-r{r}" for s in (0, 1) for r in (0, 1, 2)
    )
    assert {k.data.params["optimizer.lr"] for k in kids} == {"0.001", "0.003"}
    assert len({k.data.tags["seed.init"] for k in kids}) == 3  # seeds shared across settings
    for k in kids:  # named by setting and seed; the setting a param for "group by"
        params = k.data.params
        lr, seed = float(params["optimizer.lr"]), params["study.seed"]
        assert k.info.run_name == f"lr={lr:g} seed={seed}"
        assert params["study.setting"] == k.data.tags["study.setting"]
        assert params["study.source"] == "all"
        assert "None" not in params.values()
        assert "study.result" not in k.data.tags and k.data.tags["study.done"] == "true"

    rows = read_results(outcome.results_path)
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    by_run = {k.info.run_id: k for k in kids}
    for r in rows:
        kid = by_run[r["run_id"]]
        history = c.get_metric_history(r["run_id"], "val/AP")
        assert r["eval_epochs"] == [1, 2] == sorted(m.step for m in history)
        assert r["eval_AP"] == [m.value for m in sorted(history, key=lambda m: m.step)]
        assert r["AP"] == pytest.approx(kid.data.metrics["val/AP"])
        assert r["param.optimizer.lr"] == float(kid.data.params["optimizer.lr"])
        assert r["seed_init"] == int(kid.data.tags["seed.init"])
        assert r["wall_s"] > 0 and not r["reused"]
    artifacts = {a.path for a in c.list_artifacts(outcome.parent_run_id)}
    assert "results.parquet" in artifacts

    report, md = write_report(outcome.study_id)
    assert md.is_file() and (md.parent / "report.json").is_file()
    logged = {a.path for a in c.list_artifacts(outcome.parent_run_id)}
    assert {"report.md", "report.json", "report.html", "figures"} <= logged
    note = c.get_run(outcome.parent_run_id).data.tags["mlflow.note.content"]
    assert all(line.strip() in note for line in report["conclusions"])  # the Overview page
    for i, s in enumerate(report["settings"]):
        values = [r["AP"] for r in rows if r["setting"] == i]
        assert s["mean"] == pytest.approx(np.mean(values))
        assert s["n"] == 3
        expected_std = summarize(values).std
        assert s["std"] == pytest.approx(expected_std)
        # paired image bootstraps of the setting's 3 trials on shared draws
        assert s["validation_set"]["n"] == 3
        assert s["validation_set"]["set_specific"] >= 0
    assert all(t["test_ci"] and t["test_ci"][0] <= t["test_ci"][1] for t in report["per_trial"])
    (comp,) = report["comparisons"]
    assert comp["a"] == "optimizer.lr=0.003" and comp["b"] == "optimizer.lr=0.001"
    assert comp["diff"] == pytest.approx(
        report["settings"][1]["mean"] - report["settings"][0]["mean"]
    )
    assert comp["design"] == "paired"  # replicate r of both settings used the same seeds
    assert comp["new_images"]["image_se"] >= 0 and comp["new_images"]["se"] >= comp["se"]
    assert any(
        line.startswith("Seed-to-seed sigma") or "sigma is undefined" in line
        for line in report["conclusions"]
    )
    text = md.read_text()
    assert "## Conclusions" in text and "## Per setting" in text


def test_resume_after_the_driver_is_killed_runs_each_trial_once(
    study_file, mlflow_server, local_ray, state_dir, tmp_path
):
    path = study_file(
        "study-resume", seeds=2, vary={"optimizer.lr": [1e-3, 3e-3]}, bootstrap_replicates=0
    )
    address = local_ray.get_runtime_context().gcs_address
    log = open(tmp_path / "driver.log", "w")  # noqa: SIM115
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sparse_rcnn.platform.cli.main",
            "study",
            path,
            "--address",
            address,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=dict(os.environ),
    )
    c = MlflowClient(mlflow_server)
    deadline = time.monotonic() + 300
    done_before: dict[str, int] = {}
    try:
        while time.monotonic() < deadline and not done_before:
            time.sleep(2)
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            exp = c.get_experiment_by_name("study-resume")
            if exp is None:
                continue
            for r in c.search_runs([exp.experiment_id]):
                if r.data.tags.get("study.done") == "true":
                    done_before[r.data.tags["study.trial"]] = r.info.end_time
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver dies hard, mid-study
        killed_at = time.time()
        driver.wait()
        log.close()
    assert done_before, "no trial finished before the deadline"
    study_id = next(p.name for p in (state_dir / "studies").iterdir())
    with pytest.raises(StudyError, match="no results.parquet yet"):
        write_report(study_id)

    outcome = resume_study(study_id)
    assert outcome.finished
    _, kids = _children(c, "study-resume", outcome.parent_run_id)
    keys = sorted(k.data.tags["study.trial"] for k in kids)
    assert keys == ["s0-all-r0", "s0-all-r1", "s1-all-r0", "s1-all-r1"]  # one run per trial
    assert all(k.info.status == "FINISHED" for k in kids)
    assert c.get_run(outcome.parent_run_id).info.status == "FINISHED"
    rows = {r["trial_key"]: r for r in read_results(outcome.results_path)}
    for key, end_time in done_before.items():
        run = next(k for k in kids if k.data.tags["study.trial"] == key)
        assert run.info.end_time == end_time, f"{key} was trained again"
        # Read back from MLflow on resume, or already in the Tune state the driver saved
        # before it died (a race the kill can win either way): never trained again.
        assert rows[key]["reused"] or rows[key]["ended_at"] < killed_at, rows[key]
        assert rows[key]["run_id"] == run.info.run_id
    assert all(r["status"] == "ok" and math.isfinite(r["AP"]) for r in rows.values())
    report, _ = write_report(study_id, replicates=0, log=False)
    assert report["trials"] == {"total": 4, "ok": 4, "failed": []}
    assert json.loads((study_folder(study_id) / "study.json").read_text())["study_id"] == study_id


def test_a_failed_trial_is_recorded_and_excluded_not_retried(
    study_file, mlflow_server, local_ray, state_dir, tmp_path, monkeypatch
):
    marker = tmp_path / "failed-once"
    monkeypatch.setenv("SPARSE_RCNN_FAIL_ONCE", f"0:1:{marker}")  # the first trial fails
    path = study_file("study-fail", seeds=2, max_concurrent_trials=1, bootstrap_replicates=0,
                      set={"max_failures": 0})  # fmt: skip
    outcome = start_study(load_study(path))
    assert outcome.finished and marker.exists()
    rows = {r["trial_key"]: r for r in read_results(outcome.results_path)}
    failed, ok = rows["s0-all-r0"], rows["s0-all-r1"]
    assert failed["status"] == "failed" and math.isnan(failed["AP"])
    assert "injected failure" in failed["error"]
    assert ok["status"] == "ok" and math.isfinite(ok["AP"])
    c = MlflowClient(mlflow_server)
    assert c.get_run(failed["run_id"]).info.status == "FAILED"
    assert c.get_run(outcome.parent_run_id).info.status == "FINISHED"
    report, _ = write_report(outcome.study_id, log=False)
    assert [f["trial"] for f in report["trials"]["failed"]] == ["s0-all-r0"]
    summary = report["settings"][0]
    assert (summary["n"], summary["n_failed"]) == (1, 1)
    assert summary["mean"] == pytest.approx(ok["AP"])  # the NaN is never averaged in
    assert report["conclusions"][0].startswith("1 trial(s) failed")


def test_one_worker_trials_run_in_process_and_two_worker_trials_on_ray_train(
    study_file, mlflow_server, local_ray, state_dir, capfd
):
    """A study mixing both kinds: the one-worker trial trains in its Tune trial's process (its
    checkpoints are the engine's files), the two-worker one as a Ray Train run (Train's
    checkpoint folders); both log the same run contents. Together they need the 2 CPUs. Neither
    prints the engine's per-epoch line: the study's progress line reports each epoch."""
    path = study_file("study-mixed", seeds=1, bootstrap_replicates=0,
                      vary={"scaling.num_workers": [1, 2]})  # fmt: skip
    outcome = start_study(load_study(path))
    assert outcome.finished and outcome.concurrency == 1
    rows = {r["trial_key"]: r for r in read_results(outcome.results_path)}
    assert all(r["status"] == "ok" and math.isfinite(r["AP"]) for r in rows.values())
    results = state_dir / "ray_results"
    one, two = (results / f"{outcome.study_id}-s{i}-all-r0" for i in (0, 1))
    assert sorted(p.name for p in one.iterdir()) == [f"checkpoint_epoch_{e}.pt" for e in (0, 1)]
    assert any(p.is_dir() and p.name.startswith("checkpoint_") for p in two.iterdir())
    c = MlflowClient(mlflow_server)
    for r in rows.values():
        assert c.get_run(r["run_id"]).info.status == "FINISHED"
        assert sorted(m.step for m in c.get_metric_history(r["run_id"], "val/AP")) == [1, 2]
        assert [a.path for a in c.list_artifacts(r["run_id"], "checkpoint")] == [
            "checkpoint/model.pt"
        ]
    time.sleep(2)  # Ray forwards worker output to this process asynchronously
    console = capfd.readouterr()
    assert re.search(r"s1-all-r0 epoch 2: AP", console.out)  # the study's line, captured
    assert not re.search(r"epoch \d+/\d+: iteration", console.out + console.err)


def test_resume_when_the_driver_died_before_tune_saved_its_trials(
    study_file, mlflow_server, local_ray, state_dir
):
    """A driver killed after Tune wrote tuner.pkl but before its experiment state: resume starts
    the trials again instead of restoring an empty Tune state; finished ones are read back from
    MLflow, not trained again."""
    path = study_file("study-nostate", seeds=2, bootstrap_replicates=0)
    first = start_study(load_study(path))
    assert first.finished
    tune_dir = study_folder(first.study_id) / "tune"
    for state in tune_dir.glob("experiment_state-*.json"):
        state.unlink()  # what a kill in that window leaves
    assert (tune_dir / "tuner.pkl").is_file()
    c = MlflowClient(mlflow_server)
    before = {r["trial_key"]: c.get_run(r["run_id"]).info.end_time
              for r in read_results(first.results_path)}  # fmt: skip
    outcome = resume_study(first.study_id)
    assert outcome.finished
    rows = read_results(outcome.results_path)
    assert sorted(r["trial_key"] for r in rows) == sorted(before)
    for r in rows:
        assert r["reused"] and r["status"] == "ok", r
        assert c.get_run(r["run_id"]).info.end_time == before[r["trial_key"]]

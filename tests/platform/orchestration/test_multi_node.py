"""Jobs on a real 2-node Ray cluster on loopback (``loopback_cluster``: a head and a second node
of 1 CPU each, token auth, shared storage as a local folder) tracking to a real MLflow server:
one worker on each node, a worker node that dies mid-training, and a study whose driver dies
between trials."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from ray.job_submission import JobStatus

from sparse_rcnn.platform.cli.main import main
from sparse_rcnn.platform.orchestration.results import read_results
from sparse_rcnn.platform.orchestration.submit import job_logs, open_dashboard, wait
from tests.platform.orchestration.loopback_cluster import LoopbackCluster

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    # Ray's own tail_job_logs (aiohttp ws_connect with ssl=None).
    pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning"),
]

NODE2_IP = "127.0.0.3"


@pytest.fixture(scope="module")
def two_nodes():
    """A head (127.0.0.2) and a second node (127.0.0.3), 1 CPU each: a 2-worker job has one
    worker on each. Tests that kill the second node start it again before they end."""
    cluster = LoopbackCluster.start(head_cpus=1)
    try:
        cluster.add_node("node2", NODE2_IP, num_cpus=1)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("RAY_AUTH_TOKEN_PATH", str(cluster.token_path))
            for name in ("RAY_AUTH_TOKEN", "RAY_API_SERVER_ADDRESS", "MLFLOW_TRACKING_URI"):
                mp.delenv(name, raising=False)
            yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def two_worker_job(tmp_path, small_job):
    """Factory: the small job with 2 workers, evaluated and checkpointed every epoch, its
    checkpoints in a folder every node sees; returns the spec file and that folder."""

    def make(experiment: str, epochs: int) -> tuple[Path, Path]:
        shared = tmp_path / "shared"
        data = small_job(**{
            "name": "two-nodes", "scaling.num_workers": 2, "eval_interval": 1,
            "schedule.epochs": epochs, "schedule.lr_steps": [], "storage_path": str(shared),
            "mlflow.experiment": experiment,
        })  # fmt: skip
        path = tmp_path / "job.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path, shared

    return make


def _submit_argv(cluster: LoopbackCluster, spec: Path, tracking_uri: str, state: Path,
                 *extra: str) -> list[str]:  # fmt: skip
    """``sparse-rcnn submit`` of ``spec``, the job's state (datasets) under ``state``."""
    return ["submit", str(spec), "--address", cluster.dashboard, "--tracking-uri", tracking_uri,
            "--env", f"SPARSE_RCNN_STATE_DIR={state}", *extra]  # fmt: skip


def _submission_id(out: str) -> str:
    found = re.search(r"submitted job (\S+) to ", out)
    assert found, out[-2000:]
    return found.group(1)


def _only_run(client: MlflowClient, experiment: str):
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run


def _steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def _assert_each_step_once(client: MlflowClient, run_id: str, epochs: int) -> None:
    """``train/loss`` at every iteration 1..N exactly once, N = epochs x steps of epoch 1
    (``log_interval`` is 1; ``train/epoch`` says which epoch a step belongs to)."""
    per_epoch = sum(m.value == 0 for m in client.get_metric_history(run_id, "train/epoch"))
    assert per_epoch >= 1
    assert _steps(client, run_id, "train/loss") == list(range(1, epochs * per_epoch + 1))


def test_a_submitted_job_trains_one_worker_on_each_node(
    two_nodes, mlflow_server, two_worker_job, tmp_path, capsys
):
    spec, shared = two_worker_job("two-nodes", epochs=2)
    rc = main(_submit_argv(two_nodes, spec, mlflow_server, tmp_path))
    out = capsys.readouterr().out
    assert rc == 0, out[-3000:]
    sid = _submission_id(out)
    assert f"job {sid} SUCCEEDED" in out

    c = MlflowClient(mlflow_server)
    run = _only_run(c, "two-nodes")
    assert run.info.status == "FINISHED"
    assert run.data.tags["ray_job_id"] == sid
    node_ids = run.data.tags["ray.worker_node_ids"].split(",")
    assert len(node_ids) == 2 and len(set(node_ids)) == 2  # rank 0 and rank 1 apart
    assert set(node_ids) == {two_nodes.node_id("head"), two_nodes.node_id("node2")}
    assert sorted(run.data.tags["ray.worker_node_ips"].split(",")) == ["127.0.0.2", NODE2_IP]
    assert "resumed_after_epoch" not in run.data.tags
    assert _steps(c, run.info.run_id, "val/AP") == [1, 2]
    _assert_each_step_once(c, run.info.run_id, epochs=2)
    assert any(shared.glob("two-nodes-*/checkpoint_*"))  # Ray Train's, in the shared folder


def _wait_for(what: str, predicate, timeout: float, dash, sid: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s; job log:\n{job_logs(dash, sid)[-3000:]}")
        time.sleep(0.3)


@pytest.mark.parametrize("fault", ["raylet", "whole-node"])
def test_a_worker_node_killed_mid_training_resumes_in_the_same_run(
    two_nodes, mlflow_server, two_worker_job, tmp_path, capsys, fault
):
    """``raylet``: SIGKILL of the second node's raylet once the first checkpoint is committed.
    ``whole-node``: every process of the node at once, as soon as epoch 1's evaluation is
    logged, i.e. before (or while) its checkpoint commits: the restart may go back to an older
    checkpoint and evaluate epoch 1 again, which must not log it twice."""
    experiment = f"node-killed-{fault}"
    epochs = 4
    spec, shared = two_worker_job(experiment, epochs=epochs)
    assert main(_submit_argv(two_nodes, spec, mlflow_server, tmp_path, "--no-wait")) == 0
    sid = _submission_id(capsys.readouterr().out)
    dash = open_dashboard(two_nodes.dashboard)
    c = MlflowClient(mlflow_server)

    def run_id() -> str | None:
        exp = c.get_experiment_by_name(experiment)
        runs = c.search_runs([exp.experiment_id]) if exp else []
        return runs[0].info.run_id if runs else None

    def evaluated() -> bool:
        return run_id() is not None and bool(c.get_metric_history(run_id(), "val/AP"))

    _wait_for("epoch 1 was not evaluated", evaluated, 240, dash, sid)
    if fault == "raylet":
        committed = lambda: any(shared.glob("two-nodes-*/checkpoint_*"))  # noqa: E731
        _wait_for("no checkpoint was committed", committed, 60, dash, sid)
    lost = two_nodes.node_id("node2")
    if fault == "raylet":
        two_nodes.kill_raylet("node2")
    else:
        two_nodes.kill_node("node2")
    evaluated_at_kill = len(_steps(c, run_id(), "val/AP"))
    two_nodes.restart("node2")  # first: the tests after this one need the node
    assert evaluated_at_kill < epochs, "the job ended before the kill"

    info = wait(dash, sid, timeout_s=400, poll_s=1)
    logs = job_logs(dash, sid)
    assert info.status == JobStatus.SUCCEEDED, logs[-3000:]
    run = _only_run(c, experiment)  # one MLflow run across the restart
    assert run.info.status == "FINISHED"
    assert _steps(c, run.info.run_id, "val/AP") == [1, 2, 3, 4]  # every epoch exactly once
    _assert_each_step_once(c, run.info.run_id, epochs)
    resumed = int(run.data.tags.get("resumed_after_epoch", 0))
    if fault == "raylet":  # the committed checkpoint, not a start from scratch
        assert 1 <= resumed < epochs
    node_ids = set(run.data.tags["ray.worker_node_ids"].split(","))
    assert node_ids == {two_nodes.node_id("head"), two_nodes.node_id("node2")}
    assert lost not in node_ids  # the restarted worker group runs on the new node


def test_a_job_stopped_while_it_waits_for_a_lost_node_ends_its_run_killed(
    two_nodes, mlflow_server, two_worker_job, tmp_path, capsys, monkeypatch
):
    """The second node dies and stays down: Ray Train waits for capacity, and its SIGINT
    handler waits with it, so Ray SIGKILLs the driver after ``RAY_JOB_STOP_WAIT_TIME_S``
    (5 s here, 30 s by default) before the driver can close its run. ``jobs stop --wait``
    closes it: KILLED, with the reason."""
    from sparse_rcnn.platform.orchestration import submit as submit_module

    monkeypatch.setitem(submit_module.JOB_ENV_DEFAULTS, "RAY_JOB_STOP_WAIT_TIME_S", "5")
    experiment = "stopped-waiting"
    spec, _ = two_worker_job(experiment, epochs=30)
    assert main(_submit_argv(two_nodes, spec, mlflow_server, tmp_path, "--no-wait")) == 0
    sid = _submission_id(capsys.readouterr().out)
    dash = open_dashboard(two_nodes.dashboard)
    c = MlflowClient(mlflow_server)

    def run():
        exp = c.get_experiment_by_name(experiment)
        runs = c.search_runs([exp.experiment_id]) if exp else []
        return runs[0] if runs else None

    def evaluated() -> bool:
        return run() is not None and bool(c.get_metric_history(run().info.run_id, "val/AP"))

    _wait_for("epoch 1 was not evaluated", evaluated, 240, dash, sid)
    try:
        two_nodes.kill_node("node2")
        two_nodes.wait_dead("node2")
        time.sleep(3)  # Ray Train notices the dead worker and waits for 2 CPUs again
        assert run().info.status == "RUNNING"
        assert main(["jobs", "stop", sid, "--wait", "--address", two_nodes.dashboard]) == 0
        out = capsys.readouterr().out
        assert f"job {sid} STOPPED" in out
        closed = run()
        assert closed.info.status == "KILLED"  # by the driver, or else by jobs stop
        if f"MLflow run {closed.info.run_id}" in out:
            assert closed.data.tags["error"].startswith(f"Ray job {sid} ended STOPPED")
    finally:
        two_nodes.restart("node2")


def _study_cli(cluster: LoopbackCluster, state: Path, log: Path, *args: str) -> subprocess.Popen:
    """``sparse-rcnn study ... --address GCS`` as its own process (own session, so it and its
    children die together), with the cluster's token and the test's state dir."""
    env = {**cluster.env, "SPARSE_RCNN_STATE_DIR": str(state)}
    cmd = [sys.executable, "-m", "sparse_rcnn.platform.cli.main", "study", *args,
           "--address", cluster.gcs_address, "--no-report"]  # fmt: skip
    with open(log, "w") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


def test_a_study_driver_killed_between_trials_resumes_on_the_cluster(
    two_nodes, mlflow_server, small_job, tmp_path
):
    experiment = "study-driver-killed"
    job = small_job(**{"mlflow.tracking_uri": mlflow_server, "mlflow.experiment": experiment,
                       "eval_interval": 1, "storage_path": str(tmp_path / "shared")})  # fmt: skip
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(job))
    study = {"name": "killed", "job": "base.yaml", "seeds": 3, "max_concurrent_trials": 1,
             "bootstrap_replicates": 0}  # fmt: skip
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    state = tmp_path / "state"
    c = MlflowClient(mlflow_server)

    def trial_runs() -> list:
        exp = c.get_experiment_by_name(experiment)
        runs = c.search_runs([exp.experiment_id]) if exp else []
        return [r for r in runs if r.data.tags.get("study.role") == "trial"]

    first = tmp_path / "driver.log"
    driver = _study_cli(two_nodes, state, first, str(tmp_path / "study.yaml"))
    try:
        deadline = time.monotonic() + 300
        done: dict[str, int] = {}
        while not done:  # the first trial has its result; the second one is starting
            assert driver.poll() is None, first.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no trial finished:\n{first.read_text()[-3000:]}"
            time.sleep(1)
            done = {r.data.tags["study.trial"]: r.info.end_time for r in trial_runs()
                    if r.data.tags.get("study.done") == "true"}  # fmt: skip
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver dies hard, between trials
        driver.wait()
    assert driver.returncode == -signal.SIGKILL
    assert len(done) < 3, "every trial finished before the driver was killed"
    (study_id,) = [p.name for p in (state / "studies").iterdir()]

    second = tmp_path / "resume.log"
    resumed = _study_cli(two_nodes, state, second, "--resume", study_id)
    try:
        rc = resumed.wait(timeout=400)
    finally:
        if resumed.poll() is None:
            os.killpg(resumed.pid, signal.SIGKILL)
    assert rc == 0, second.read_text()[-3000:]
    assert f"resuming study {study_id}" in second.read_text()
    assert f"study {study_id} finished" in second.read_text()

    kids = trial_runs()
    trials = ["s0-all-r0", "s0-all-r1", "s0-all-r2"]
    assert sorted(k.data.tags["study.trial"] for k in kids) == trials  # one run per trial
    for k in kids:  # the trial interrupted mid-training logged each epoch once all the same
        assert _steps(c, k.info.run_id, "val/AP") == [1, 2]
    for key, end_time in done.items():  # a finished trial is not trained again
        run = next(k for k in kids if k.data.tags["study.trial"] == key)
        assert run.info.end_time == end_time, f"{key} was trained again"
    exp = c.get_experiment_by_name(experiment)
    assert not c.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
    assert {r.info.status for r in c.search_runs([exp.experiment_id])} == {"FINISHED"}
    results = read_results(state / "studies" / study_id / "results.parquet")
    rows = {r["trial_key"]: r for r in results}
    assert sorted(rows) == trials
    assert all(r["status"] == "ok" and r["eval_epochs"] == [1, 2] for r in rows.values())
    assert all(rows[key]["reused"] for key in done)

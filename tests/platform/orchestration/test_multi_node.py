"""Jobs on a real 2-node Ray cluster on loopback (``loopback_cluster``: a head and a second node
of 1 CPU each, token auth, shared storage as a local folder) tracking to a real MLflow server:
one worker on each node, and a worker node that dies mid-training."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from ray.job_submission import JobStatus

from sparse_rcnn.platform.cli.main import main
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
    assert len(_steps(c, run_id(), "val/AP")) < epochs, "the job ended before the kill"
    two_nodes.restart("node2")

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

"""The tracking server going away during training (a real ``mlflow server``, SIGKILLed with its
process group and restarted on the same port and store): training goes on, every metric
reaches the run exactly once with the value computed, and a server that stays away stops the
run at a checkpoint with one line, its writes kept for the resumed job to deliver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from sparse_rcnn.platform.engine.local_reporter import LocalReporter
from sparse_rcnn.platform.orchestration.in_process import checkpoint_folder, run_job_in_process
from sparse_rcnn.platform.orchestration.train import JobFailed, create_job_run
from sparse_rcnn.platform.spec.job import JobSpec
from sparse_rcnn.platform.spec.load import validate
from sparse_rcnn.platform.tracking import names
from sparse_rcnn.platform.tracking.outbox import JOURNAL, OutboxLogger, outbox_folder
from sparse_rcnn.platform.tracking.runs import client
from tests.conftest import free_port, wait_http

pytestmark = pytest.mark.slow


class Server:
    """A real ``mlflow server`` (SQLite store, local artifacts) in its own process group, so
    that a kill takes its uvicorn worker along; restarted on the same port and store."""

    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination", str(self.root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(self.root / "server.log", "a") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip
        wait_http(f"{self.uri}/health", timeout=120, proc=self.proc)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    s.start()
    yield s
    s.kill()


@pytest.fixture
def computed(monkeypatch):
    """What the engine handed the logger: ``{"train": {key: {step: value}}, "val": ...}``,
    recorded on the way in (the writes themselves go on as usual)."""
    seen: dict[str, dict[str, dict[int, float]]] = {"train": {}, "val": {}}
    log_metrics, log_epoch = OutboxLogger.log_metrics, OutboxLogger.log_epoch

    def spy_metrics(self, metrics, step):
        for k, v in metrics.items():
            assert step not in seen["train"].setdefault(k, {}), "the engine logged a step twice"
            seen["train"][k][step] = float(v)
        log_metrics(self, metrics, step)

    def spy_epoch(self, epoch, metrics):
        for k, v in metrics.items():
            if v >= 0:  # what RunLogger keeps (-1: COCO's "does not exist")
                seen["val"].setdefault(names.EVAL_PREFIX + k, {})[epoch] = float(v)
        log_epoch(self, epoch, metrics)

    monkeypatch.setattr(OutboxLogger, "log_metrics", spy_metrics)
    monkeypatch.setattr(OutboxLogger, "log_epoch", spy_epoch)
    return seen


def _job(small_job, server: Server, epochs: int) -> tuple[JobSpec, str]:
    data = small_job(**{"schedule.epochs": epochs, "schedule.lr_steps": [epochs - 1],
                        "eval_interval": 1, "max_failures": 0, "mlflow.experiment": "outage",
                        "mlflow.tracking_uri": server.uri})  # fmt: skip
    spec = validate(JobSpec, data, "test")
    return spec, create_job_run(spec, server.uri)


def _assert_full_history(uri: str, run_id: str, seen: dict) -> dict[str, list]:
    """Every metric the engine computed is in the run once per step, with its value."""
    c = client(uri)
    histories = {}
    for group in seen.values():
        for key, values in group.items():
            history = c.get_metric_history(run_id, key)
            steps = [m.step for m in history]
            assert sorted(steps) == sorted(values), key  # each step present exactly once
            assert {m.step: m.value for m in history} == pytest.approx(values), key
            histories[key] = history
    return histories


def test_training_goes_on_while_the_server_is_down_and_every_metric_arrives_once(
    small_job, state_dir, server, computed, monkeypatch
):
    monkeypatch.setenv("SPARSE_RCNN_TRACKING_OUTAGE_S", "300")
    spec, run_id = _job(small_job, server, epochs=6)
    outage: dict[str, float] = {}
    two_more_epochs = threading.Event()

    def down_for_a_while():
        outage["down"] = time.time()
        server.kill()
        time.sleep(15)
        # Down until training has done two more epochs, however loaded the machine: a logger
        # that waited on the server would get no further than step 9 before the cap.
        two_more_epochs.wait(timeout=120)
        outage["restarting"] = time.time()
        server.start()
        outage["up"] = time.time()

    restarter = threading.Thread(target=down_for_a_while)

    def on_report(metrics):
        if metrics["epoch"] == 1:  # after the second epoch's checkpoint (step 8)
            restarter.start()
        if metrics["epoch"] == 3:  # steps 9-16 trained since
            two_more_epochs.set()

    started = time.time()
    outcome = run_job_in_process(spec, run_id, server.uri, "outage", on_report=on_report)
    restarter.join()
    print(f"trained in {time.time() - started:.1f} s; server down "
          f"{outage['restarting'] - outage['down']:.1f} s, back after "
          f"{outage['up'] - outage['down']:.1f} s")  # fmt: skip

    run = client(server.uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    histories = _assert_full_history(server.uri, run_id, computed)
    iterations = torch.load(outcome.checkpoint_path, weights_only=True)["iteration"]
    assert sorted(computed["train"]["train/loss"]) == list(range(1, iterations + 1))
    assert sorted(computed["val"][names.AP]) == list(range(1, 7))
    # Training went on while the server was down: steps computed (stamped) in the outage.
    during = [m.step for m in histories["train/loss"]
              if outage["down"] * 1000 < m.timestamp < outage["restarting"] * 1000]  # fmt: skip
    assert set(range(9, 17)) <= set(during), f"only steps {during} trained with the server down"
    # Pictures of every evaluation and the last one's figures arrived; the outbox is gone.
    c = client(server.uri)
    images = [a.path for a in c.list_artifacts(run_id, "images") if a.path.endswith(".png")]
    assert sorted(int(p.split("+step+")[1].split("+")[0]) for p in images) == list(range(1, 7))
    figures = {a.path for a in c.list_artifacts(run_id, names.ARTIFACT_EVAL_FIGURES_DIR)}
    assert figures == {"evaluation/pr_curves.png", "evaluation/ap_per_category.png"}
    assert [a.path for a in c.list_artifacts(run_id, names.ARTIFACT_DETECTIONS_DIR)] == [
        "detections/val_detections_epoch6.parquet"
    ]
    assert not outbox_folder(checkpoint_folder(spec, "outage"), run_id).exists()


def test_a_server_that_stays_away_stops_the_run_at_a_checkpoint_and_loses_nothing(
    small_job, state_dir, server, computed, monkeypatch
):
    monkeypatch.setenv("SPARSE_RCNN_TRACKING_OUTAGE_S", "4")
    spec, run_id = _job(small_job, server, epochs=6)

    def on_report(metrics):
        if metrics["epoch"] == 0:
            server.kill()

    with pytest.raises(JobFailed) as failed:
        run_job_in_process(spec, run_id, server.uri, "gone", on_report=on_report)
    message = str(failed.value)
    print(message)
    folder = checkpoint_folder(spec, "gone")
    outbox = outbox_folder(folder, run_id)
    assert "\n" not in message
    assert f"tracking server {server.uri} unreachable" in message
    assert "SPARSE_RCNN_TRACKING_OUTAGE_S=4" in message
    assert f"kept in {outbox}" in message and f"checkpoints in {folder}" in message
    stopped_after = int(message.split("training stopped after epoch ")[1].split(" ")[0])
    assert 2 <= stopped_after < 6
    # The checkpoint of the epoch it stopped after is written and loads; the writes wait.
    latest = LocalReporter(folder).latest_checkpoint()
    assert latest is not None and latest["epoch"] == stopped_after - 1
    assert (outbox / JOURNAL).stat().st_size > 0
    assert max(computed["val"][names.AP]) == stopped_after

    # The server comes back; resuming the job delivers the kept writes and trains on.
    server.start()
    monkeypatch.setenv("SPARSE_RCNN_TRACKING_OUTAGE_S", "120")
    run_job_in_process(spec, run_id, server.uri, "gone")
    assert client(server.uri).get_run(run_id).info.status == "FINISHED"
    _assert_full_history(server.uri, run_id, computed)
    assert sorted(computed["val"][names.AP]) == list(range(1, 7))
    assert not outbox.exists()

"""Real services for the tests that need them: an ``mlflow server`` on 127.0.0.1 and a local
Ray, each started once per session."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

# Faster Ray Train reporting in tests (the controller polls every 2 s by default).
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """``http://127.0.0.1:PORT`` of a real MLflow tracking server (SQLite + local artifacts),
    started lean: one worker, no job runner."""
    root: Path = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(root / "server.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{uri}/health", timeout=120, proc=proc)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray for the whole session (2 CPUs, the dashboard on for Train V2's state API)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=True, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    """A fresh state directory (datasets, embedded MLflow store, Ray results) for one test."""
    path = tmp_path / "state"
    monkeypatch.setenv("SPARSE_RCNN_STATE_DIR", str(path))
    return path


def _small_job(**changes) -> dict:
    """A job spec (as a dict) that trains in seconds on 2 cores: a 2-stage tiny model with 8
    proposals on 12 small synthetic images. ``changes`` are dotted paths, e.g.
    ``**{"schedule.epochs": 3}``."""
    data = {
        "name": "small-test",
        "model": {"preset": "tiny", "overrides": {"num_proposals": 8, "num_stages": 2}},
        "dataset": {"kind": "synthetic", "input_ratio": 0.2,
                    "synthetic": {"images": 12, "seed": 5, "val_fraction": 0.34,
                                  "min_size": 128, "max_size": 160}},
        "schedule": {"epochs": 2, "lr_steps": [1], "warmup_iters": 3},
        "optimizer": {"lr": 1e-3},
        "batch_size_per_worker": 2,
        "scaling": {"num_workers": 1},
        "mlflow": {"log_interval": 1},
    }  # fmt: skip
    for key, value in changes.items():
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return data


@pytest.fixture(scope="session")
def small_job():
    """Factory of the small test job as a dict (see :func:`_small_job`)."""
    return _small_job

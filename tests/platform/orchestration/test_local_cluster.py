"""``sparse-rcnn train`` as a user runs it (a subprocess, a fresh local Ray): which sockets the
local Ray listens on, what the console shows, and what Ctrl-C leaves behind."""

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

from tests.platform.orchestration.sockets import Listener, listening, process_tree

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# README "Which sockets the local Ray opens": the only listener on all interfaces is rank 0's
# torch.distributed TCPStore (the process group's rendezvous; torch has no bind address for it),
# in the Ray Train worker (its process title is "ray::RayTrainWorker..." or, while it runs the
# train function, "ray::execute._private...").
ALL_INTERFACES_ALLOWED = ("ray::RayTrainWo", "ray::execute._p")
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
RAY_NOISE = ("Reporting training result", "Traceback", "PreemptionWatcher", "Found multiple",
             "INFO mlflow")  # fmt: skip


def _start_train(tmp_path: Path, job: dict, *extra: str) -> tuple[subprocess.Popen, Path, Path]:
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(job, sort_keys=False))
    unset = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["SPARSE_RCNN_STATE_DIR"] = str(tmp_path / "state")
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    cmd = [sys.executable, "-m", "sparse_rcnn.platform.cli.main", "train", str(spec), *extra]
    proc = _start_in_own_session(cmd, env=env, stdout=out.open("w"), stderr=err.open("w"),
                                 cwd=tmp_path)  # fmt: skip
    return proc, out, err


def _start_in_own_session(cmd: list[str], **kwargs) -> subprocess.Popen:
    """``cmd`` in its own session (SIGINT to its process group is what Ctrl-C in a terminal
    does), with SIGINT at its default disposition as in a terminal. A pytest started in the
    background by a shell without job control inherits SIGINT ignored, and a command started
    from it would too: Python then installs no KeyboardInterrupt handler, and a study (which
    turns off Tune's own handler) rightly ignores Ctrl-C, as under ``nohup``."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:  # a handler here becomes the default disposition in the exec'd child
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(cmd, start_new_session=True, **kwargs)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_local_ray_listens_on_loopback_and_the_console_is_quiet(tmp_path, small_job):
    job = small_job(**{"schedule.epochs": 4, "schedule.lr_steps": [], "eval_interval": 2,
                       "schedule.warmup_iters": 2, "mlflow.experiment": "quiet"})  # fmt: skip
    proc, out, err = _start_train(tmp_path, job)
    seen: set[Listener] = set()
    try:
        while proc.poll() is None:
            seen |= listening(process_tree(proc.pid))
            time.sleep(0.5)
    finally:
        _stop_group(proc)
    stdout, stderr = out.read_text(), err.read_text()
    assert proc.returncode == 0, stderr[-3000:]

    assert {"gcs_server", "raylet"} <= {s.process for s in seen}  # the sampling saw Ray
    wide = {s for s in seen if s.all_interfaces}
    assert {s for s in wide if not s.process.startswith(ALL_INTERFACES_ALLOWED)} == set()
    assert len({s.port for s in wide}) <= 1, wide  # one TCPStore per run
    assert {s for s in seen if not s.all_interfaces and s.address not in LOOPBACK} == set()

    for noise in RAY_NOISE:
        assert noise not in stdout + stderr, (stdout + stderr)[-3000:]
    epochs = {int(m[1]): m[0] for m in re.finditer(r"epoch (\d+)/4: .*", stdout)}
    assert sorted(epochs) == [1, 2, 3, 4], stdout
    assert "val AP" in epochs[2] and "val AP" in epochs[4]
    assert "AP" not in epochs[1] and "AP" not in epochs[3]  # no evaluation in these epochs
    assert re.search(r"^MLflow run [0-9a-f]{32} FINISHED", stdout, re.M)


def test_ctrl_c_says_what_was_kept_and_exits_130(tmp_path, small_job):
    job = small_job(**{"schedule.epochs": 40, "schedule.lr_steps": [], "eval_interval": 0,
                       "mlflow.experiment": "ctrl-c"})  # fmt: skip
    proc, out, err = _start_train(tmp_path, job)
    try:
        deadline = time.monotonic() + 240
        while "epoch 2/40" not in out.read_text():
            assert proc.poll() is None, err.read_text()[-3000:]
            assert time.monotonic() < deadline, "training did not reach epoch 2"
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        _stop_group(proc)
    stderr = err.read_text()
    assert proc.returncode == 130, stderr[-3000:]
    line = re.search(r"^sparse-rcnn train: interrupted: MLflow run ([0-9a-f]{32}) marked "
                     r"KILLED; last checkpoint (\S+)$", stderr, re.M)  # fmt: skip
    assert line, stderr[-3000:]
    assert Path(line[2]).is_dir() and Path(line[2]).name.startswith("checkpoint_")
    for noise in RAY_NOISE:
        assert noise not in stderr + out.read_text(), stderr[-3000:]


def test_ctrl_c_on_a_study_exits_130_with_the_resume_command(tmp_path, small_job):
    job = small_job(**{"schedule.epochs": 40, "schedule.lr_steps": [], "eval_interval": 0,
                       "mlflow.experiment": "ctrl-c-study"})  # fmt: skip
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(job, sort_keys=False))
    study = {"name": "cc", "job": "base.yaml", "seeds": 2, "bootstrap_replicates": 0}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    unset = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",
             "TUNE_DISABLE_SIGINT_HANDLER")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["SPARSE_RCNN_STATE_DIR"] = str(tmp_path / "state")
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    cmd = [sys.executable, "-m", "sparse_rcnn.platform.cli.main", "study", "study.yaml"]
    proc = _start_in_own_session(cmd, env=env, stdout=out.open("w"), stderr=err.open("w"),
                                 cwd=tmp_path)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while "started cc" not in out.read_text() and "started s0" not in out.read_text():
            assert proc.poll() is None, err.read_text()[-3000:]
            assert time.monotonic() < deadline, "no trial started"
            time.sleep(0.5)
        time.sleep(5)  # the trial is training
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        _stop_group(proc)
    stdout, stderr = out.read_text(), err.read_text()
    assert proc.returncode == 130, (stdout + stderr)[-3000:]
    line = re.search(r"^study (\S+) stopped: interrupted \(Ctrl-C\); resume with: "
                     r"sparse-rcnn study --resume (\S+)$", stdout, re.M)  # fmt: skip
    assert line and line[1] == line[2], stdout[-3000:]
    assert "Traceback" not in stdout + stderr, (stdout + stderr)[-3000:]

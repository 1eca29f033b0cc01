"""``sparse-rcnn submit`` and ``sparse-rcnn jobs`` against a real Ray cluster started with
``ray start --head`` on 127.0.0.1 (token auth on, its own token and temp dir), tracking to a
real MLflow server."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import yaml
from mlflow.tracking import MlflowClient
from ray.job_submission import JobStatus

from sparse_rcnn.platform.cli.main import main
from sparse_rcnn.platform.orchestration.package import source_commit, source_root, staged_package
from sparse_rcnn.platform.orchestration.submit import (
    job_info,
    job_logs,
    open_dashboard,
    runtime_env,
    wait,
)

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    # Ray's own tail_job_logs (aiohttp ws_connect with ssl=None).
    pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_node(address: str, token: str, proc: subprocess.Popen, timeout: float) -> None:
    """Until the dashboard lists one ALIVE node (the dashboard answers before that)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}")
        try:
            r = requests.get(f"{address}/api/v0/nodes", timeout=5,
                             headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            nodes = r.json()["data"]["result"]["result"] if r.status_code == 200 else []
            if any(n["state"] == "ALIVE" for n in nodes):
                return
        except (requests.RequestException, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the Ray head at {address} did not come up within {timeout} s")


@pytest.fixture(scope="module")
def ray_head():
    """A head node of its own: 2 CPUs, dashboard on 127.0.0.1, token auth with its own token
    (so the test does not depend on ~/.ray/auth_token). ``ray stop`` would stop every Ray on
    this machine; this one runs under ``ray start --block`` and ends with that process."""
    # Short path: Ray's Unix socket paths under the temp dir must stay below 108 characters.
    root = Path(tempfile.mkdtemp(prefix="rsub-", dir="/tmp"))
    token_path = root / "auth_token"
    token = secrets.token_hex(32)
    token_path.write_text(token)
    dash_port = _free_port()
    address = f"http://127.0.0.1:{dash_port}"
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_API_SERVER_ADDRESS")}  # fmt: skip
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token_path),
        RAY_USAGE_STATS_ENABLED="0",
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="2",  # a test cluster: nothing worth draining
        # An entrypoint's `python` is looked up on the cluster's PATH: this environment's.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    ray_cli = Path(sys.executable).parent / "ray"
    cmd = [
        str(ray_cli if ray_cli.exists() else shutil.which("ray")), "start", "--head", "--block",
        "--node-ip-address=127.0.0.1", f"--port={_free_port()}",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}",
        f"--dashboard-agent-listen-port={_free_port()}", f"--ray-client-server-port={_free_port()}",
        "--num-cpus=2", "--include-dashboard=true", f"--temp-dir={root / 'ray'}",
        "--disable-usage-stats",
    ]  # fmt: skip
    log = open(root / "head.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_node(address, token, proc, timeout=90)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("RAY_AUTH_TOKEN_PATH", str(token_path))
            for name in ("RAY_AUTH_TOKEN", "RAY_API_SERVER_ADDRESS", "MLFLOW_TRACKING_URI"):
                mp.delenv(name, raising=False)
            yield SimpleNamespace(address=address, token=token, root=root)
    finally:
        proc.terminate()  # drains the node, then stops the processes it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        _kill_leftovers(str(root))
        shutil.rmtree(root, ignore_errors=True)


def _kill_leftovers(marker: str) -> None:
    """Processes of this head only: their command lines name its temp dir (Linux /proc)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmdline.read_bytes().decode(errors="replace"):
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            pass


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory, small_job) -> Path:
    """The tiny synthetic job of test_train_job, one worker, one epoch; no tracking URI."""
    data = small_job(**{"name": "ray-submit", "schedule.epochs": 1, "schedule.lr_steps": [],
                        "schedule.warmup_iters": 2, "mlflow.experiment": "submit"})  # fmt: skip
    path = tmp_path_factory.mktemp("submit") / "job.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _submission_id(out: str) -> str:
    found = re.search(r"submitted job (\S+) to ", out)
    assert found, out[-2000:]
    return found.group(1)


def _submitted_ids(address: str, capsys) -> list[str]:
    assert main(["jobs", "list", "--address", address]) == 0
    return re.findall(r"^(ray-submit-[0-9a-f]{8})\s", capsys.readouterr().out, flags=re.M)


def test_submit_runs_the_job_and_tracks_it_in_mlflow(ray_head, mlflow_server, spec_file, capsys):
    argv = ["submit", str(spec_file), "--address", ray_head.address,
            "--tracking-uri", mlflow_server, "--set", "mlflow.experiment=submit-ok"]  # fmt: skip
    rc = main(argv)
    out = capsys.readouterr().out
    assert rc == 0, out[-3000:]
    sid = _submission_id(out)
    assert re.fullmatch(r"ray-submit-[0-9a-f]{8}", sid)
    assert f"job {sid} SUCCEEDED" in out
    assert "Running entrypoint" in out  # the driver log was streamed while waiting
    shipped_from = job_info(open_dashboard(ray_head.address), sid).metadata.get("git_commit")
    assert (shipped_from or "").split("-")[0] == (source_commit() or "").split("-")[0]

    c = MlflowClient(mlflow_server)
    runs = c.search_runs([c.get_experiment_by_name("submit-ok").experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["mlflow.tracking_uri"] == mlflow_server  # the spec the job ran
    assert run.data.tags["ray_job_id"] == sid  # the id `jobs list` shows, not Ray's internal one
    assert [m.step for m in c.get_metric_history(run.info.run_id, "val/AP")] == [1]
    assert {"job_spec.yaml", "checkpoint"} <= {a.path for a in c.list_artifacts(run.info.run_id)}

    assert main(["jobs", "list", "--address", ray_head.address]) == 0
    table = capsys.readouterr().out
    assert re.search(rf"^{sid}\s+SUCCEEDED\s+\d{{4}}-.*sparse-rcnn train spec\.yaml$", table, re.M)

    assert main(["jobs", "logs", sid, "--address", ray_head.address]) == 0
    assert f"MLflow run {run.info.run_id} FINISHED" in capsys.readouterr().out


def test_the_job_imports_the_shipped_package_not_the_clusters(ray_head):
    dash = open_dashboard(ray_head.address)
    probe = "python -c 'import sparse_rcnn.platform.cli.main as m; print(m.__file__)'"
    with staged_package(None) as package, tempfile.TemporaryDirectory() as empty:
        sid = dash.client.submit_job(
            entrypoint=probe, runtime_env=runtime_env(Path(empty), package, {})
        )
    assert wait(dash, sid, timeout_s=120, poll_s=0.5).status == JobStatus.SUCCEEDED
    logs = job_logs(dash, sid)
    assert "/runtime_resources/py_modules_files/" in logs
    assert str(source_root()) not in logs


@pytest.mark.parametrize(
    "override, missing",
    [("scaling.num_workers=8", "CPU: needs 8, cluster has 2"),
     ("scaling.use_gpu=true", "GPU: needs 1, cluster has 0")],
)  # fmt: skip
def test_impossible_resources_fail_before_submission(
    ray_head, mlflow_server, spec_file, capsys, override, missing
):
    before = _submitted_ids(ray_head.address, capsys)
    argv = ["submit", str(spec_file), "--address", ray_head.address,
            "--tracking-uri", mlflow_server, "--set", override]  # fmt: skip
    started = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - started < 10
    assert missing in capsys.readouterr().err
    assert _submitted_ids(ray_head.address, capsys) == before


@pytest.mark.parametrize("stop_wait_s", ["30", "0"], ids=["graceful", "driver-sigkilled"])
def test_stop_ends_a_running_job(ray_head, mlflow_server, spec_file, capsys, monkeypatch,
                                 stop_wait_s):  # fmt: skip
    # "0": Ray SIGKILLs the driver right after the SIGINT (as after 30 s when Ray Train waits
    # for a lost node), so its handler cannot mark the run; `jobs stop --wait` closes it.
    from sparse_rcnn.platform.orchestration import submit as submit_module

    monkeypatch.setitem(submit_module.JOB_ENV_DEFAULTS, "RAY_JOB_STOP_WAIT_TIME_S", stop_wait_s)
    experiment = f"submit-stop-{stop_wait_s}"
    argv = ["submit", str(spec_file), "--address", ray_head.address, "--no-wait",
            "--tracking-uri", mlflow_server, "--set", f"mlflow.experiment={experiment}",
            "--set", "schedule.epochs=50"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    sid = _submission_id(out)
    assert f"sparse-rcnn jobs logs {sid} --follow" in out

    # Stop it in the middle of training: once the run has logged a training loss.
    c = MlflowClient(mlflow_server)
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        exp = c.get_experiment_by_name(experiment)
        runs = c.search_runs([exp.experiment_id]) if exp else []
        if runs and c.get_metric_history(runs[0].info.run_id, "train/loss"):
            break
        time.sleep(1)
    else:
        logs = job_logs(open_dashboard(ray_head.address), sid)
        pytest.fail(f"job {sid} did not start training:\n{logs[-3000:]}")

    assert main(["jobs", "stop", sid, "--wait", "--address", ray_head.address]) == 0
    stopped = capsys.readouterr().out
    assert f"job {sid} STOPPED" in stopped
    assert "View run" not in stopped  # MLflow's own stdout line
    run_id = runs[0].info.run_id
    if stop_wait_s == "0":  # no waiting: the run is closed by the time `jobs stop` returns
        assert c.get_run(run_id).info.status == "KILLED"
        if f"MLflow run {run_id}" in stopped:  # closed by jobs stop, not by the driver
            assert f"was still RUNNING after job {sid} ended: marked KILLED" in stopped
            assert c.get_run(run_id).data.tags["error"].startswith(f"Ray job {sid} ended STOPPED")
    assert main(["jobs", "list", "--address", ray_head.address]) == 0
    assert re.search(rf"^{sid}\s+STOPPED\s", capsys.readouterr().out, re.M)
    # The driver got SIGINT: Ray Train aborts and raises SystemExit; run_job marks the run KILLED.
    deadline = time.monotonic() + 30
    while c.get_run(run_id).info.status == "RUNNING" and time.monotonic() < deadline:
        time.sleep(1)
    assert c.get_run(run_id).info.status == "KILLED"

    assert main(["jobs", "stop", sid, "--address", ray_head.address]) == 0
    assert "had already ended (STOPPED)" in capsys.readouterr().out


def test_unknown_job_ids_are_named(ray_head, capsys):
    for action in ("logs", "stop"):
        assert main(["jobs", action, "no-such-job", "--address", ray_head.address]) == 2
        assert "no job 'no-such-job' on the cluster" in capsys.readouterr().err


def test_a_token_cluster_needs_the_right_token(ray_head, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token either
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    assert main(["jobs", "list", "--address", ray_head.address]) == 2
    assert "requires token authentication and no token was found" in capsys.readouterr().err
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-the-token")
    assert main(["jobs", "list", "--address", ray_head.address]) == 2
    assert "rejected the auth token from $RAY_AUTH_TOKEN" in capsys.readouterr().err


def test_a_submitted_job_needs_a_tracking_server_the_cluster_can_reach(
    spec_file, monkeypatch, capsys
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    address = ["--address", "http://10.1.2.3:8265"]  # never contacted: refused before
    assert main(["submit", str(spec_file), *address]) == 2
    assert "needs an MLflow tracking server the cluster can reach" in capsys.readouterr().err
    assert main(["submit", str(spec_file), *address, "--tracking-uri", "sqlite:///x.db"]) == 2
    assert "is a store in this machine's files" in capsys.readouterr().err
    loopback = ["--tracking-uri", "http://127.0.0.1:5000"]
    assert main(["submit", str(spec_file), *address, *loopback]) == 2
    assert "this machine's loopback" in capsys.readouterr().err


def test_secrets_stay_out_of_metadata_params_files_and_output(
    ray_head, mlflow_server, spec_file, capsys
):
    password, env_secret = f"pw-{secrets.token_hex(8)}", f"hf-{secrets.token_hex(8)}"
    clean = mlflow_server  # http://127.0.0.1:PORT; the server ignores the basic-auth header
    with_credentials = clean.replace("http://", f"http://alice:{password}@")
    argv = ["submit", str(spec_file), "--address", ray_head.address,
            "--tracking-uri", with_credentials, "--env", f"HF_TOKEN={env_secret}",
            "--set", "mlflow.experiment=submit-secrets"]  # fmt: skip
    rc = main(argv)
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert rc == 0, printed[-3000:]
    hidden = (password, env_secret, ray_head.token)
    assert not [s for s in hidden if s in printed]
    assert f"(MLflow: {clean})" in printed

    dash = open_dashboard(ray_head.address)
    sid = _submission_id(captured.out)
    info = job_info(dash, sid)
    assert info.metadata["tracking_uri"] == clean
    assert not [s for s in hidden if s in repr(info.metadata) + info.entrypoint]
    env = info.runtime_env["env_vars"]  # the one way secrets reach the job
    assert env["MLFLOW_TRACKING_URI"] == clean
    assert env["MLFLOW_TRACKING_USERNAME"] == "alice"
    assert env["MLFLOW_TRACKING_PASSWORD"] == password and env["HF_TOKEN"] == env_secret
    assert not [s for s in hidden if s in job_logs(dash, sid)]

    c = MlflowClient(mlflow_server)
    (run,) = c.search_runs([c.get_experiment_by_name("submit-secrets").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["mlflow.tracking_uri"] == clean  # the shipped spec.yaml's value
    logged = repr(run.data.params) + repr(run.data.tags)
    with tempfile.TemporaryDirectory() as tmp:
        logged += Path(c.download_artifacts(run.info.run_id, "job_spec.yaml", tmp)).read_text()
    assert not [s for s in hidden if s in logged]

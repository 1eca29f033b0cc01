"""``sparse-rcnn ui``: host and port checked before the server starts, one line on failure,
and a warning when the (unauthenticated) UI listens beyond loopback."""

from __future__ import annotations

import socket
import subprocess

import pytest

from sparse_rcnn.platform.cli.main import main


@pytest.mark.parametrize(
    "argv, message",
    [(["--port", "99999"], "--port 99999: not a port number (1-65535)"),
     (["--port", "0"], "--port 0: not a port number (1-65535)"),
     (["--port", "http"], "--port http: not a port number (1-65535)"),
     (["--host", "bad_host!"], "--host 'bad_host!' is neither an IP address nor a host name"),
     (["--host", "no-such-host.invalid"],
      "--host no-such-host.invalid: this machine cannot resolve that name"),
     (["--host", "192.0.2.123"],
      "cannot listen on 192.0.2.123:5000: Cannot assign requested address (pick another --port "
      "or --host)")],
)  # fmt: skip
def test_bad_host_or_port_is_one_line(argv, message, state_dir, capsys, monkeypatch):
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: pytest.fail("server started"))
    assert main(["ui", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"sparse-rcnn ui: error: {message}\n"
    assert captured.out == ""


def test_a_port_in_use_is_one_line(state_dir, capsys, monkeypatch):
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: pytest.fail("server started"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["ui", "--port", str(port)]) == 2
    assert capsys.readouterr().err == (
        f"sparse-rcnn ui: error: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(pick another --port or --host)\n"
    )


def test_a_non_loopback_host_warns_that_the_ui_has_no_authentication(
    state_dir, capsys, monkeypatch
):
    started = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, **k: started.append(cmd) or 0)
    assert main(["ui", "--host", "0.0.0.0", "--port", "5999"]) == 0
    err = capsys.readouterr().err
    assert err == (
        "warning: the MLflow UI has no authentication: anyone who can reach 0.0.0.0:5999 can "
        "read, change and delete every run\n"
    )
    assert started and started[0][started[0].index("--host") + 1] == "0.0.0.0"
    assert main(["ui", "--host", "localhost", "--port", "5999"]) == 0
    assert capsys.readouterr().err == ""


def test_a_server_that_fails_exits_non_zero(state_dir, capsys, monkeypatch):
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: 1)
    assert main(["ui", "--port", "5998"]) == 1
    assert (
        capsys.readouterr().err == "sparse-rcnn ui: error: the MLflow server exited with status 1\n"
    )

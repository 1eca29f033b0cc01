"""Where the Ray auth token may go: only to the configured address, and over plain http only to
loopback unless ``--insecure-token``. A stand-in dashboard that answers 401 records what it got."""

from __future__ import annotations

import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sparse_rcnn.platform.cli.main import main

TOKEN = "tok-" + "5" * 60


def _non_loopback_ip() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent; picks the outgoing interface
        except OSError:
            return None
        ip = s.getsockname()[0]
    return None if ip.startswith("127.") else ip


@pytest.fixture
def auth_dashboard():
    """``(address, seen)``: an http server on this machine's non-loopback IP that answers 401
    to everything; ``seen`` collects the Authorization headers it received."""
    ip = _non_loopback_ip()
    if ip is None:
        if os.environ.get("CI"):  # in CI a skip would hide the check
            pytest.fail(
                "this machine has no non-loopback IPv4 address to serve a remote dashboard on"
            )
        pytest.skip(
            reason="this machine has no non-loopback IPv4 address to serve a remote dashboard on"
        )
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            seen.append(self.headers.get("Authorization"))
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((ip, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{ip}:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_no_token_over_plain_http_to_another_host(auth_dashboard, monkeypatch, capsys):
    address, seen = auth_dashboard
    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)
    assert main(["jobs", "list", "--address", address]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"sparse-rcnn jobs: error: the Ray cluster at {address} asks for the auth token, which "
        "plain http would send readable to anyone on the path: use https:// or pass "
        "--insecure-token\n"
    )
    assert seen == [None]  # asked once without a token, never with it


def test_insecure_token_sends_it_and_never_prints_it(auth_dashboard, monkeypatch, capsys):
    address, seen = auth_dashboard
    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)
    assert main(["jobs", "list", "--address", address, "--insecure-token"]) == 2
    captured = capsys.readouterr()
    assert "rejected the auth token from $RAY_AUTH_TOKEN" in captured.err
    assert seen == [None, f"Bearer {TOKEN}"]
    assert TOKEN not in captured.out + captured.err

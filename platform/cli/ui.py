"""``sparse-rcnn ui``: the MLflow UI on the embedded store, on 127.0.0.1."""

from __future__ import annotations

import argparse
import ipaddress
import re
import socket
import sys

HELP = "Start the MLflow UI (127.0.0.1) on the embedded SQLite store, or on --backend-store-uri."

_HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$")


def port_number(text: str) -> int:
    """``text`` as a TCP port, 1-65535; UserError (one line) otherwise."""
    from sparse_rcnn.platform.cli.main import UserError

    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise UserError(f"--port {text}: not a port number (1-65535)")
    return port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", default="5000", help="1-65535 (default 5000)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; any other host is reachable from the "
        "network, and the MLflow UI has no authentication)",
    )
    parser.add_argument("--backend-store-uri", help="default: the embedded store in the state dir")


def server_command(port: int, host: str, backend: str | None) -> list[str]:
    """The ``mlflow server`` command line: one worker, no job runner (13 s and ~570 MB to
    start on 2 cores instead of 29 s and ~3 GB with the defaults)."""
    from sparse_rcnn.platform.tracking.store import embedded_artifact_root, embedded_uri

    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend or embedded_uri(),
        "--artifacts-destination", str(embedded_artifact_root()),
        "--host", host, "--port", str(port), "--workers", "1",
    ]  # fmt: skip


def listen_addresses(host: str) -> list[str]:
    """The IP addresses ``host`` (an IP or a hostname) resolves to; UserError if none."""
    from sparse_rcnn.platform.cli.main import UserError

    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    if not _HOSTNAME.match(host):
        raise UserError(f"--host {host!r} is neither an IP address nor a host name")
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UserError(f"--host {host}: this machine cannot resolve that name") from None
    return sorted({str(info[4][0]) for info in infos})


def is_loopback_only(addresses: list[str]) -> bool:
    return all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def check_can_listen(host: str, port: int) -> None:
    """Bind ``host:port`` once and let it go, so a port in use or an address this machine does
    not have is one line now instead of the server's traceback later."""
    from sparse_rcnn.platform.cli.main import UserError

    for family, kind, proto, _, addr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(addr)
            except OSError as e:
                raise UserError(
                    f"cannot listen on {host}:{port}: {e.strerror or e} (pick another --port "
                    "or --host)"
                ) from None
        return


def run(args: argparse.Namespace) -> int:
    import os
    import subprocess

    port = port_number(args.port)
    addresses = listen_addresses(args.host)
    check_can_listen(args.host, port)
    if not is_loopback_only(addresses):
        print(
            f"warning: the MLflow UI has no authentication: anyone who can reach "
            f"{args.host}:{port} can read, change and delete every run",
            file=sys.stderr,
        )
    cmd = server_command(port, args.host, args.backend_store_uri)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    print(f"MLflow UI on http://{args.host}:{port} (Ctrl-C stops it)", flush=True)
    try:
        code = subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0
    if code != 0:
        print(f"sparse-rcnn ui: error: the MLflow server exited with status {code}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0

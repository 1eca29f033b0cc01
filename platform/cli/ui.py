"""``sparse-rcnn ui [STUDY_ID]``: the MLflow UI on the embedded store, on 127.0.0.1, with deep
links into the model-training view: each experiment's runs, and a study's runs (the parent with
its trials nested), its Overview page (the conclusions) and its report.html. Without a study id
the newest study of the store is linked."""

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
    parser.add_argument(
        "study_id", nargs="?", help="a study to link to (default: the newest study)"
    )
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


def browser_base(host: str, port: int) -> str:
    """The URL a browser on this machine uses for a server listening on ``host``."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _study(study_id: str | None):
    """The record of ``study_id`` (UserError naming the problem), or of the newest study in
    the state dir; None when there is none."""
    from sparse_rcnn.platform.cli.main import UserError
    from sparse_rcnn.platform.errors import PlatformError
    from sparse_rcnn.platform.orchestration.study_record import (
        STUDY_FILE,
        StudyRecord,
        studies_root,
        study_folder,
    )

    if study_id is not None:
        try:
            return StudyRecord.load(study_folder(study_id))
        except PlatformError as e:
            raise UserError(str(e)) from None
    folders = [p for p in studies_root().glob("*") if (p / STUDY_FILE).is_file()]
    for folder in sorted(folders, key=lambda p: (p / STUDY_FILE).stat().st_mtime, reverse=True):
        try:
            return StudyRecord.load(folder)
        except PlatformError:  # a damaged record is not the one to link
            continue
    return None


def link_lines(base: str, backend: str, record, experiments: bool = True) -> list[str]:
    """What to open: each experiment's runs in ``backend`` (newest first, at most 8, unless
    ``experiments`` is False) and the study's pages when ``record`` is tracked there."""
    from sparse_rcnn.platform.tracking import links, names

    lines = []
    if experiments:
        for name, eid in list(links.experiment_ids(backend).items())[:8]:
            lines.append(f"  experiment {name}: {links.experiment_runs(base, eid)}")
    if record is not None:
        eid = links.experiment_ids(backend, [record.experiment]).get(record.experiment)
        if eid is not None:
            rid = record.parent_run_id
            lines += [
                f"  study {record.study_id}: {links.study_runs(base, eid, record.study_id)}",
                f"    conclusions: {links.run_page(base, eid, rid)}",
                f"    report: {links.artifact(base, eid, rid, names.ARTIFACT_REPORT_HTML)}",
            ]
    return lines


def _print_server_links(record) -> int:
    """A study tracked on an MLflow server: its UI is already there; print the links on it."""
    import os

    from sparse_rcnn.platform.cli.main import UserError
    from sparse_rcnn.platform.redact import redact_uri

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    base = redact_uri(record.tracking_uri)
    try:
        lines = link_lines(base, record.tracking_uri, record, experiments=False)
    except Exception as e:  # unreachable, refused, no such experiment: one line
        raise UserError(f"study {record.study_id} is tracked on {base}, which answered: "
                        f"{str(e).splitlines()[0][:200]}") from None  # fmt: skip
    print(f"study {record.study_id} is tracked on {base}; nothing to start here. Open:")
    print("\n".join(lines))
    return 0


def run(args: argparse.Namespace) -> int:
    import os
    import subprocess

    from sparse_rcnn.platform.cli.main import UserError
    from sparse_rcnn.platform.redact import redact_uri
    from sparse_rcnn.platform.tracking.store import embedded_uri

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
    port = port_number(args.port)
    addresses = listen_addresses(args.host)
    record = _study(args.study_id)
    backend = args.backend_store_uri or embedded_uri()
    if record is not None and record.tracking_uri != backend:
        if args.study_id is None:
            record = None  # the newest study lives elsewhere: link only what this store has
        elif record.tracking_uri.startswith(("http://", "https://")):
            return _print_server_links(record)
        elif args.backend_store_uri is None:
            backend = record.tracking_uri
        else:
            raise UserError(
                f"study {record.study_id} is tracked in {redact_uri(record.tracking_uri)}, not "
                f"in --backend-store-uri {redact_uri(backend)}"
            )
    check_can_listen(args.host, port)
    if not is_loopback_only(addresses):
        print(
            f"warning: the MLflow UI has no authentication: anyone who can reach "
            f"{args.host}:{port} can read, change and delete every run",
            file=sys.stderr,
        )
    cmd = server_command(port, args.host, backend)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    base = browser_base(args.host, port)
    print(f"MLflow UI on {base} (Ctrl-C stops it); open:", flush=True)
    for line in link_lines(base, backend, record):
        print(line, flush=True)
    try:
        code = subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0
    if code != 0:
        print(f"sparse-rcnn ui: error: the MLflow server exited with status {code}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0

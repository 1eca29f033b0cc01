"""``sparse-rcnn jobs list|logs|stop``: the jobs submitted to a Ray cluster."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from sparse_rcnn.platform.cli.submit import add_insecure_token_argument

HELP = "List, read the logs of, or stop jobs submitted to a Ray cluster."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    address = argparse.ArgumentParser(add_help=False)
    address.add_argument(
        "--address", help="Ray dashboard, http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS)"
    )
    add_insecure_token_argument(address)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", parents=[address], help="submitted jobs, oldest first")
    logs = sub.add_parser("logs", parents=[address], help="a job's driver log")
    logs.add_argument("submission_id")
    logs.add_argument("--follow", "-f", action="store_true", help="stream until the job ends")
    stop = sub.add_parser(
        "stop", parents=[address], help="stop a job (SIGINT: Ray Train aborts the run)"
    )
    stop.add_argument("submission_id")
    stop.add_argument("--wait", action="store_true", help="return once the job has stopped")


def jobs_table(jobs: list) -> str:
    """One row per job: submission id, status, start, end, entrypoint (shortened)."""
    rows = [("SUBMISSION ID", "STATUS", "START", "END", "ENTRYPOINT")]
    for j in jobs:
        entry = j.entrypoint.replace("python -m sparse_rcnn.platform.cli.main", "sparse-rcnn")
        entry = entry if len(entry) <= 60 else entry[:57] + "..."
        rows.append((j.submission_id or j.job_id or "?", j.status.value,
                     _time(j.start_time), _time(j.end_time), entry))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
        for r in rows
    )


def _time(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def run(args: argparse.Namespace) -> int:
    from sparse_rcnn.platform.cli.main import UserError
    from sparse_rcnn.platform.names import check_name
    from sparse_rcnn.platform.orchestration import submit as jobs

    if args.action != "list":
        check_name("submission id", args.submission_id)  # before any request
    try:
        dash = jobs.open_dashboard(args.address, args.insecure_token)
        if args.action == "list":
            listed = jobs.list_jobs(dash)
            print(jobs_table(listed) if listed else f"no submitted jobs on {dash.address}")
            close_orphaned_runs(listed)
            return 0
        if args.action == "logs":
            if not args.follow:
                print(jobs.job_logs(dash, args.submission_id), end="")
                return 0
            info = jobs.follow(dash, args.submission_id, _write)
            print(f"job {args.submission_id} {info.status.value}")
            return 0 if info.status.value == "SUCCEEDED" else 1
        stopped = jobs.stop_job(dash, args.submission_id)
        if not stopped:
            status = jobs.job_info(dash, args.submission_id).status.value
            print(f"job {args.submission_id} had already ended ({status})")
            return 0
        if args.wait:
            info = jobs.wait(dash, args.submission_id)
            print(f"job {args.submission_id} {info.status.value}")
            close_orphaned_runs([info])
        else:
            print(f"stop requested for job {args.submission_id}")
        return 0
    except jobs.SubmitError as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:
        return 130


def close_orphaned_runs(listed: list) -> None:
    """Close the MLflow runs that ended jobs left RUNNING (``tracking.orphans``), one line per
    run; a tracking server that cannot be reached is one warning, not a failure of the list."""
    import os

    from sparse_rcnn.platform.redact import redact_uri
    from sparse_rcnn.platform.tracking.orphans import close_runs_of_ended_jobs

    by_uri: dict[str, dict[str, str]] = {}
    for j in listed:
        uri = (j.metadata or {}).get("tracking_uri")
        if uri and j.submission_id and j.status.value in ("SUCCEEDED", "FAILED", "STOPPED"):
            by_uri.setdefault(uri, {})[j.submission_id] = j.status.value
    if not by_uri:
        return
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # a dead server: seconds
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    for uri, ended in by_uri.items():
        try:
            closed = close_runs_of_ended_jobs(uri, ended)
        except Exception as e:  # unreachable or refusing: the job list itself stands
            first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            print(f"warning: could not check the runs on {redact_uri(uri)}: {first}",
                  file=sys.stderr)  # fmt: skip
            continue
        for r in closed:
            print(f"MLflow run {r.run_id} ({r.run_name}) was still RUNNING after job "
                  f"{r.submission_id} ended: marked {r.status}")  # fmt: skip


def _write(chunk: str) -> None:
    sys.stdout.write(chunk)
    sys.stdout.flush()

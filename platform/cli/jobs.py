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
        else:
            print(f"stop requested for job {args.submission_id}")
        return 0
    except jobs.SubmitError as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:
        return 130


def _write(chunk: str) -> None:
    sys.stdout.write(chunk)
    sys.stdout.flush()

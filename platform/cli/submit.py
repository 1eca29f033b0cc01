"""``sparse-rcnn submit JOB.yaml --address http://HEAD:8265 [--set key.path=value ...]``."""

from __future__ import annotations

import argparse
import sys

from sparse_rcnn.platform.cli.train import add_spec_arguments

HELP = (
    "Submit a job spec to a Ray cluster (Ray Jobs API) with this package and the resolved "
    "spec; waits and streams the logs unless --no-wait."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_spec_arguments(parser)
    parser.add_argument(
        "--address", help="Ray dashboard, http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS)"
    )
    parser.add_argument(
        "--tracking-uri", help="MLflow server the cluster logs to (overrides mlflow.tracking_uri)"
    )
    parser.add_argument(
        "--allow-local-tracking",
        action="store_true",
        help="allow a store in this machine's files (a single-node cluster on this machine)",
    )
    parser.add_argument(
        "--env",
        dest="env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment variable for the job's driver and workers (repeatable)",
    )
    package = parser.add_mutually_exclusive_group()
    package.add_argument("--wheel", help="ship this wheel of the package instead of building one")
    package.add_argument(
        "--no-package",
        action="store_true",
        help="ship no code: the cluster's image has sparse-rcnn-platform installed",
    )
    parser.add_argument("--submission-id", help="default: <spec name>-<8 hex digits>")
    parser.add_argument(
        "--skip-resource-check",
        action="store_true",
        help="submit even if the cluster lacks the resources now (an autoscaling cluster)",
    )
    parser.add_argument("--no-wait", action="store_true", help="return once the job is submitted")
    add_insecure_token_argument(parser)


def add_insecure_token_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--insecure-token",
        action="store_true",
        help="send the Ray auth token over plain http to a non-loopback address (readable on "
        "the network; prefer https)",
    )


def parse_env(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            from sparse_rcnn.platform.cli.main import UserError

            raise UserError(f"--env {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sparse_rcnn.platform.cli.main import UserError
    from sparse_rcnn.platform.names import check_name
    from sparse_rcnn.platform.orchestration import submit as jobs
    from sparse_rcnn.platform.orchestration.cluster import ResourceError
    from sparse_rcnn.platform.orchestration.package import PackagingError, staged_package
    from sparse_rcnn.platform.spec.load import load_job_spec

    if args.submission_id is not None:
        check_name("submission id", args.submission_id)  # before any request
    spec = load_job_spec(args.spec, args.overrides)
    env = parse_env(args.env)
    wheel = Path(args.wheel) if args.wheel else None
    if wheel is not None and not wheel.is_file():
        raise UserError(f"--wheel {wheel}: no such file")
    try:
        uri, tracking_env = jobs.tracking_for_cluster(
            spec, jobs.dashboard_address(args.address), args.tracking_uri,
            args.allow_local_tracking,
        )  # fmt: skip
        dash = jobs.open_dashboard(args.address, args.insecure_token)
        if not args.skip_resource_check:
            jobs.preflight(dash, spec)
        with staged_package(wheel, ship=not args.no_package) as package:
            sub = jobs.submit(spec, dash, uri, package, {**tracking_env, **env},
                              args.submission_id)  # fmt: skip
    except (jobs.SubmitError, PackagingError, ResourceError) as e:
        raise UserError(str(e)) from None
    follow_cmd = f"sparse-rcnn jobs logs {sub.submission_id} --follow --address {dash.address}"
    print(f"submitted job {sub.submission_id} to {dash.address} (MLflow: {sub.tracking_uri})",
          flush=True)  # fmt: skip
    if args.no_wait:
        print(f"follow it: {follow_cmd}")
        return 0
    try:
        info = jobs.follow(dash, sub.submission_id, _write)
    except KeyboardInterrupt:
        print(f"\nstopped following; the job keeps running. {follow_cmd}", file=sys.stderr)
        return 130
    # The message of a failed job repeats the log tail that was just streamed: first line only.
    reason = (info.message or "").splitlines()[0] if info.message else ""
    print(f"job {sub.submission_id} {info.status.value}" + (f": {reason}" if reason else ""))
    return 0 if info.status.value == "SUCCEEDED" else 1


def _write(chunk: str) -> None:
    sys.stdout.write(chunk)
    sys.stdout.flush()

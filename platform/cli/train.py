"""``sparse-rcnn train JOB.yaml [--set key.path=value ...] [--address ...]``."""

from __future__ import annotations

import argparse

HELP = "Train a job spec on Ray Train (local Ray by default) and track it in MLflow."


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """The job spec file and its ``--set`` overrides (shared by train and submit)."""
    parser.add_argument("spec", help="job spec YAML")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a spec field (repeatable)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_spec_arguments(parser)
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or local)")
    parser.add_argument("--dry-run", action="store_true", help="validate and print the spec")


def run(args: argparse.Namespace) -> int:
    from sparse_rcnn.platform.orchestration.preflight import preflight
    from sparse_rcnn.platform.spec.load import dump_spec, load_job_spec

    spec = load_job_spec(args.spec, args.overrides)
    preflight([spec], args.address, args.spec, resources=not args.dry_run)  # before any Ray start
    if args.dry_run:
        print(dump_spec(spec), end="")
        return 0
    from sparse_rcnn.platform.cli.main import UserError
    from sparse_rcnn.platform.orchestration.cluster import ResourceError
    from sparse_rcnn.platform.orchestration.train import JobFailed, run_job
    from sparse_rcnn.platform.tracking.report import print_outcome

    try:
        outcome = run_job(spec, address=args.address)
    except (JobFailed, ResourceError) as e:
        raise UserError(str(e)) from None
    print_outcome(outcome)
    return 0

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
    add_verbose_argument(parser)


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also show Ray's own logs (per-report INFO lines, core worker messages)",
    )


def prepare_console(address: str | None, verbose: bool) -> None:
    """Before ``ray`` is imported: a loopback-only local Ray, and ``--verbose`` for the driver
    and workers."""
    import os

    from sparse_rcnn.platform.orchestration.console import VERBOSE_ENV
    from sparse_rcnn.platform.orchestration.loopback import prefer_loopback

    prefer_loopback(address)
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    else:
        # MLflow configures its loggers at import (INFO, to the stderr it finds then, past the
        # console filter): "Creating initial MLflow database tables..." is not progress.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def run(args: argparse.Namespace) -> int:
    from sparse_rcnn.platform.orchestration.preflight import check_job_files
    from sparse_rcnn.platform.spec.load import dump_spec, load_job_spec

    spec = load_job_spec(args.spec, args.overrides)
    check_job_files(spec, args.spec)  # run_job checks resources too, before Ray starts
    if args.dry_run:
        print(dump_spec(spec), end="")
        return 0
    import sys

    prepare_console(args.address, args.verbose)
    from sparse_rcnn.dashboards.console_text import print_outcome
    from sparse_rcnn.platform.cli.main import UserError
    from sparse_rcnn.platform.orchestration.cluster import ResourceError
    from sparse_rcnn.platform.orchestration.console import quiet_console, shut_down_ray
    from sparse_rcnn.platform.orchestration.train import JobFailed, JobInterrupted, run_job

    try:
        with quiet_console(args.verbose):  # until the outcome is printed (Ray's log thread)
            try:
                outcome = run_job(spec, address=args.address)
                print_outcome(outcome)
            finally:
                shut_down_ray()
    except (JobFailed, ResourceError) as e:
        raise UserError(str(e)) from None
    except JobInterrupted as e:
        print(f"sparse-rcnn train: {e.summary()}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("sparse-rcnn train: interrupted before the run started; nothing was saved",
              file=sys.stderr)  # fmt: skip
        return 130
    return 0

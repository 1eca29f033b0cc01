"""``sparse-rcnn``: one entry point, one module per subcommand.

Each subcommand module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their command runs, so ``--help``
stays fast and a broken optional dependency affects only its own command.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from sparse_rcnn.platform.errors import PlatformError

# command name -> module under sparse_rcnn.platform.cli (the one explicit registry).
COMMANDS: dict[str, tuple[str, str]] = {
    "make-synthetic": ("make_synthetic", "write a synthetic COCO-format dataset"),
    "convert-checkpoint": ("convert_checkpoint", "convert an mmdetection checkpoint"),
    "predict": ("predict", "run a checkpoint on images, write COCO detections"),
    "eval": ("eval", "COCO box AP of detections, with bootstrap confidence intervals"),
    "train": ("train", "train a job spec on Ray Train, tracked in MLflow"),
    "study": ("study", "run a seed-variance study on Ray Tune, then report it"),
    "report": ("report", "statistics and conclusions of a finished study"),
    "analyze": ("analyze", "statistics and verdicts for any results table (CSV or Parquet)"),
    "submit": ("submit", "submit a job spec to a Ray cluster (Ray Jobs API)"),
    "jobs": ("jobs", "list, follow or stop jobs submitted to a Ray cluster"),
    "ui": ("ui", "start the MLflow UI on the embedded store"),
    "deliver-tracking": ("deliver_tracking", "deliver tracking writes kept while MLflow was away"),
}


class UserError(PlatformError):
    """A problem with the user's input: printed as one line, exit status 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparse-rcnn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        top.parse_args(argv)  # prints help or the "invalid choice" error and exits
        return 2
    name, rest = argv[0], argv[1:]
    # MLflow 3 prints "View run NAME at: URL" to stdout whenever a run on a server ends; the
    # platform prints its own line (with the model-training view's link where it has one).
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    module = importlib.import_module(f"sparse_rcnn.platform.cli.{COMMANDS[name][0]}")
    parser = argparse.ArgumentParser(prog=f"sparse-rcnn {name}", description=module.HELP)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except PlatformError as e:
        # Only the platform's own errors: any other exception is a bug and keeps its traceback.
        print(f"sparse-rcnn {name}: error: {one_line(str(e))}", file=sys.stderr)
        return 2


def one_line(message: str) -> str:
    """``message`` with its line breaks and runs of blanks collapsed to single spaces."""
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())

"""``sparse-rcnn deliver-tracking FOLDER``: deliver the tracking writes a run kept while its
tracking server was away (see :mod:`sparse_rcnn.platform.tracking.outbox`).

A run whose server stayed away past ``SPARSE_RCNN_TRACKING_OUTAGE_S`` stops with its writes in
``<checkpoint folder>/tracking-outbox/<run id>/``. Resuming the job delivers them; this command
does it without training: in order, each metric step once (steps the run already holds are
skipped), then removes the journal. The run's status is left as it is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "deliver the tracking writes a run kept while its tracking server was away"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "folder", metavar="FOLDER", help="a run's tracking-outbox/RUN_ID folder, or one above"
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="the runs' tracking server (default: $MLFLOW_TRACKING_URI, else the embedded store)",
    )


def run(args: argparse.Namespace) -> int:
    from sparse_rcnn.platform.cli.main import UserError
    from sparse_rcnn.platform.redact import redact
    from sparse_rcnn.platform.tracking.outbox import (
        OutboxLogger,
        TrackingUnavailable,
        kept_outboxes,
        server_answers,
    )
    from sparse_rcnn.platform.tracking.store import resolve_tracking_uri

    outboxes = kept_outboxes(args.folder)
    if not outboxes:
        raise UserError(f"{args.folder}: no kept tracking writes (no tracking-outbox journal)")
    uri = resolve_tracking_uri(args.tracking_uri)
    if not server_answers(uri):
        raise UserError(f"tracking server {redact(uri)} does not answer; nothing delivered")
    for folder in outboxes:
        logger = OutboxLogger(uri, Path(folder).name, folder, outage_s=60)
        count = logger.pending
        try:
            logger.close()
        except TrackingUnavailable as e:
            raise UserError(str(e)) from None
        print(f"delivered {count} tracking writes to run {folder.name} ({redact(uri)})")
    return 0

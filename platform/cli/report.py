"""``sparse-rcnn report STUDY_ID``: a finished study's statistics as report.md / report.json /
report.html in the study folder, logged to the study's parent MLflow run; ``--html PATH`` also
copies the self-contained report.html to PATH."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = (
    "Write a study's report (report.md, report.json, report.html with figures) and log it to "
    "its MLflow parent run."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_id", metavar="STUDY_ID", help="as printed by sparse-rcnn study")
    parser.add_argument(
        "--replicates",
        type=int,
        default=None,
        help="image-bootstrap replicates (default: the study spec's; 0 skips)",
    )
    parser.add_argument("--no-log", action="store_true", help="do not log to MLflow")
    parser.add_argument(
        "--html",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the self-contained report.html (figures inline) to PATH",
    )


def print_report(
    study_id: str, replicates: int | None = None, log: bool = True, html: Path | None = None
) -> None:
    from sparse_rcnn.dashboards.console_text import ui_command
    from sparse_rcnn.platform.cli.main import UserError
    from sparse_rcnn.platform.orchestration.study_record import StudyError
    from sparse_rcnn.platform.orchestration.study_report import write_report
    from sparse_rcnn.platform.output_files import atomic_write
    from sparse_rcnn.platform.tracking.names import ARTIFACT_REPORT_HTML as REPORT_HTML

    try:
        report, md = write_report(study_id, replicates=replicates, log=log)
    except StudyError as e:
        raise UserError(str(e)) from None
    print("conclusions:")
    for line in report["conclusions"]:
        print(f"  {line}" if not line.startswith("  ") else f"    {line.strip()}")
    page = md.with_name(REPORT_HTML)
    print(f"report: {md} (and report.json, {page.name})")
    if html is not None:
        data = page.read_bytes()
        atomic_write(html, lambda f: f.write(data), "--html", create_parent=True)
        print(f"report.html: {html}")
    ml = report["mlflow"]
    print(
        f"MLflow: parent run {ml['parent_run_id']} in experiment {ml['experiment']!r}; "
        f"browse it: {ui_command(ml['tracking_uri'])}"
    )


def run(args: argparse.Namespace) -> int:
    if args.replicates is not None and args.replicates < 0:
        from sparse_rcnn.platform.cli.main import UserError

        raise UserError(f"--replicates must be >= 0, got {args.replicates}")
    if args.html is not None:  # a bad --html fails before the report is computed
        from sparse_rcnn.platform.output_files import check_output_file

        check_output_file(args.html, "--html", create_parent=True)
    print_report(args.study_id, args.replicates, log=not args.no_log, html=args.html)
    return 0

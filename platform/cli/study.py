"""``sparse-rcnn study STUDY.yaml`` / ``sparse-rcnn study --resume STUDY_ID``: run a seed-variance
study on Ray Tune (one Ray Train run per trial), then write its report."""

from __future__ import annotations

import argparse

from sparse_rcnn.platform.cli.train import add_verbose_argument, prepare_console

HELP = "Run a seed-variance study (Ray Tune over Ray Train runs), then write its report."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", nargs="?", help="study spec YAML (see jobs/studies/)")
    parser.add_argument("--resume", metavar="STUDY_ID", help="finish an interrupted study")
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or local)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the study and list its trials without running them",
    )
    parser.add_argument("--no-report", action="store_true", help="skip the report at the end")
    add_verbose_argument(parser)


def run(args: argparse.Namespace) -> int:
    from sparse_rcnn.platform.cli.main import UserError

    if bool(args.spec) == bool(args.resume):
        raise UserError("give either a study spec file or --resume STUDY_ID")
    if args.spec:
        from sparse_rcnn.platform.spec.study import load_study

        study = load_study(args.spec)
        if args.dry_run:
            for t in study.trials:
                seeds = " ".join(f"{k}={v}" for k, v in t.seeds.items())
                print(f"{t.key:<28} {t.setting_label:<40} {t.source:<14} {seeds}")
            print(f"{len(study.trials)} trials, {len(study.settings)} settings")
            return 0
    prepare_console(args.address, args.verbose)
    from sparse_rcnn.platform.orchestration.cluster import ResourceError
    from sparse_rcnn.platform.orchestration.console import quiet_console
    from sparse_rcnn.platform.orchestration.study import StudyError, resume_study, start_study
    from sparse_rcnn.platform.orchestration.train import JobFailed

    try:
        with quiet_console(args.verbose):
            if args.resume:
                outcome = resume_study(args.resume, address=args.address)
            else:
                outcome = start_study(study, address=args.address)
    except (StudyError, ResourceError, JobFailed) as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:
        # The study driver has printed what was kept and the resume command (one line).
        return 130
    if not outcome.finished:
        print(
            f"study {outcome.study_id} is unfinished; resume it with: "
            f"sparse-rcnn study --resume {outcome.study_id}"
        )
        return 1
    print(
        f"study {outcome.study_id} finished in {outcome.wall_s / 60:.1f} min; "
        f"results: {outcome.results_path}"
    )
    if not args.no_report:
        from sparse_rcnn.platform.cli.report import print_report

        print_report(outcome.study_id)
    return 0

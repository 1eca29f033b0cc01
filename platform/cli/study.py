"""``sparse-rcnn study STUDY.yaml`` / ``sparse-rcnn study --resume STUDY_ID``: run a seed-variance
study on Ray Tune (one Ray Train run per trial), then write its report."""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING

from sparse_rcnn.platform.cli.train import add_verbose_argument, prepare_console

if TYPE_CHECKING:
    from sparse_rcnn.platform.spec.job import JobSpec
    from sparse_rcnn.platform.spec.study import Study

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
    from sparse_rcnn.platform.tracking.outbox import outage_limit

    outage_limit()  # a bad SPARSE_RCNN_TRACKING_OUTAGE_S is one line now, not in every trial
    if args.spec:
        from sparse_rcnn.platform.orchestration.preflight import check_job_files
        from sparse_rcnn.platform.spec.study import load_study

        study = load_study(args.spec)
        specs = _distinct_jobs(study)
        for spec in specs:  # before Ray starts; resources below, once the console is prepared
            check_job_files(spec, args.spec)
        sequential = study.spec.design == "sequential"
        if args.dry_run:
            from sparse_rcnn.platform.spec.study import wave_of, wave_sizes

            for t in study.trials:
                seeds = " ".join(f"{k}={v}" for k, v in t.seeds.items())
                wave = f" wave={wave_of(study.spec, t.replicate)}" if sequential else ""
                print(f"{t.key:<28} {t.setting_label:<40} {t.source:<14} {seeds}{wave}")
            print(f"{len(study.trials)} trials, {len(study.settings)} settings")
            if sequential:
                sizes = ", ".join(map(str, wave_sizes(study.spec)))
                print(f"sequential: seeds per setting after each wave {sizes} (at most)")
            return 0
    prepare_console(args.address, args.verbose)
    # Tune's own SIGINT handler ends fit() quietly with unfinished trials, indistinguishable from
    # a study whose trials errored; without it Ctrl-C raises KeyboardInterrupt in the driver,
    # the study closes its runs as KILLED, prints the resume command and exits 130. Resume
    # does not depend on Tune's last save (finished trials are found in MLflow).
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    from sparse_rcnn.platform.orchestration.console import quiet_console, shut_down_ray

    # The filter stays until the report is printed: Ray's log thread delivers worker lines
    # (and Train's report lines) for a while after the last trial ends.
    with quiet_console(args.verbose):
        try:
            return _run(args, study if args.spec else None, specs if args.spec else [])
        finally:
            shut_down_ray()


def _run(args: argparse.Namespace, study: Study | None, specs: list[JobSpec]) -> int:
    from sparse_rcnn.platform.cli.main import UserError
    from sparse_rcnn.platform.orchestration.cluster import ResourceError
    from sparse_rcnn.platform.orchestration.preflight import check_local_resources
    from sparse_rcnn.platform.orchestration.study import resume_study, start_study
    from sparse_rcnn.platform.orchestration.study_record import StudyError
    from sparse_rcnn.platform.orchestration.train import JobFailed

    try:
        if study is not None:  # before ray.init: a local Ray takes up to a minute to start
            check_local_resources([s.scaling for s in specs], args.address)
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


def _distinct_jobs(study: Study) -> list[JobSpec]:
    """One job per setting: trials of a setting differ only in seeds and name, which name no
    file or resource."""
    from sparse_rcnn.platform.spec.job import JobSpec

    jobs = {
        json.dumps({**t.job, "seeds": 0, "name": ""}, sort_keys=True): t.job for t in study.trials
    }
    return [JobSpec.model_validate(j) for j in jobs.values()]

"""A seed-variance study on Ray Tune: start or resume one, and close it when Tune returns.

The pieces: the saved state (``study_record``), what a trial reserves and how many run at once
(``packing``), the trial function Tune runs (``study_trial``), the terminal progress
(``study_progress``) and the results table (``results``).

Scheduling is FIFO with no early stopping: a scheduler such as ASHA stops the trials whose
intermediate AP is low, so the surviving seeds are a selected sample (smaller spread, inflated
mean) and the stopped ones have no final AP. A seed study must let every trial finish.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ray import tune

from sparse_rcnn.platform.names import path_under
from sparse_rcnn.platform.orchestration.cluster import (
    alive_nodes,
    check_resources,
    cluster_totals,
    forwarded_env,
)
from sparse_rcnn.platform.orchestration.packing import pack_trials, trial_job, trial_placement
from sparse_rcnn.platform.orchestration.study_progress import StudyProgress
from sparse_rcnn.platform.orchestration.study_record import (
    RESULTS_FILE,
    TUNE_NAME,
    StudyError,
    StudyRecord,
    new_study_id,
    record_timing,
    studies_root,
    study_folder,
)
from sparse_rcnn.platform.orchestration.study_trial import study_trial
from sparse_rcnn.platform.orchestration.train import connect_tracked, dataset_paths
from sparse_rcnn.platform.orchestration.tune_state import SignTuneState, sign, verify
from sparse_rcnn.platform.spec.job import JobSpec, ScalingSpec
from sparse_rcnn.platform.spec.load import dump_spec, flatten
from sparse_rcnn.platform.spec.study import Study
from sparse_rcnn.platform.tracking.runs import finish_run
from sparse_rcnn.platform.tracking.store import resolve_tracking_uri
from sparse_rcnn.platform.tracking.studies import create_study_run, reopen_run, running_trial_runs


@dataclass
class StudyOutcome:
    study_id: str
    folder: Path
    parent_run_id: str
    tracking_uri: str
    finished: bool  # every trial has a result (ok or failed)
    results_path: Path | None
    wall_s: float
    concurrency: int


def start_study(
    study: Study, address: str | None = None, study_id: str | None = None
) -> StudyOutcome:
    """Create the study folder and parent run, then run every trial (see the module doc)."""
    base = study.base_spec
    uri = resolve_tracking_uri(base.mlflow.tracking_uri)
    connect_tracked(uri, address)
    nodes = alive_nodes()
    for scaling in {json.dumps(p.job["scaling"], sort_keys=True) for p in study.trials}:
        check_resources(ScalingSpec.model_validate_json(scaling), nodes)
    concurrency, jobs = pack_trials(study, cluster_totals(nodes))
    datasets = {json.dumps(p.job["dataset"], sort_keys=True): p.job for p in study.trials}
    for job in datasets.values():
        dataset_paths(JobSpec.model_validate(job))  # generated once here, not by every trial
    study_id = study_id or new_study_id(study.spec.name)
    folder = path_under(studies_root(), study_id, "study id")
    folder.mkdir(parents=True, exist_ok=False)
    spec_dict = study.spec.model_dump(mode="json")
    params = {f"study.{k}": v for k, v in flatten(spec_dict).items()}
    params.update(
        {
            "study.num_trials": len(study.trials),
            "study.num_settings": len(study.settings),
            "study.max_concurrent_trials": concurrency,
        }
    )
    parent = create_study_run(uri, base.mlflow.experiment, study_id, params, dump_spec(study.spec))
    record = StudyRecord(
        study_id,
        spec_dict,
        study.base_job,
        parent,
        uri,
        base.mlflow.experiment,
        concurrency,
        time.time(),
    )
    record.save(folder)
    ctx = trial_context(record)
    if study.spec.design == "sequential":
        from sparse_rcnn.platform.orchestration.study_waves import run_waves

        return run_waves(record, folder, ctx)
    trials = [{**p.to_dict(), "job": job} for p, job in zip(study.trials, jobs, strict=True)]
    print(
        f"study {study_id}: {len(study.trials)} trials ({len(study.settings)} settings x "
        f"{len(study.trials) // max(len(study.settings), 1)} runs), {concurrency} at a time; "
        f"folder {folder}",
        flush=True,
    )
    progress = StudyProgress(study_id, study.spec.metric, concurrency, len(study.trials))
    tuner = new_tuner(trials, ctx, record, folder, TUNE_NAME, progress)
    return _fit(tuner, record, folder)


def new_tuner(
    trials: list[dict],
    ctx: dict,
    record: StudyRecord,
    folder: Path,
    tune_name: str,
    progress: StudyProgress,
) -> tune.Tuner:
    """A Tuner over ``trials`` (each a ``TrialPlan.to_dict()`` with its packed job) saving its
    state in ``folder/tune_name``, signed as it goes."""
    tuner = tune.Tuner(
        tune.with_resources(study_trial, trial_placement),
        param_space={"trial": tune.grid_search(trials), "ctx": ctx},
        # A finished trial's actor takes the next trial with the same resources: no new
        # process, imports or placement group between trials (issue 12).
        tune_config=tune.TuneConfig(
            max_concurrent_trials=record.max_concurrent_trials, reuse_actors=True
        ),
        run_config=tune.RunConfig(
            name=tune_name,
            storage_path=str(folder),
            verbose=0,
            callbacks=[progress, SignTuneState(record.study_id, tune_name)],
            failure_config=tune.FailureConfig(max_failures=record.spec.get("max_failures", 0)),
        ),
    )
    sign(folder, tune_name)  # tuner.pkl, written by the Tuner's constructor
    return tuner


def tune_trials(plans: list) -> list[dict]:
    """Tune's grid over ``plans`` (``TrialPlan``s): each plan with its job as the trial runs it
    (:func:`~.packing.trial_job`)."""
    return [{**p.to_dict(), "job": trial_job(p.job)} for p in plans]


def tune_state_saved(path: Path) -> bool:
    """Whether ``path`` holds a Tune state that can be restored: Tune's own test
    (``Tuner.can_restore``: its ``tuner.pkl``, written when the fit starts) and the experiment
    state Tune writes once trials run. A driver killed between the two leaves a ``tuner.pkl``
    that Tune restores without its trials (every trial's config empty, measured on Ray 2.60)."""
    return tune.Tuner.can_restore(str(path)) and any(path.glob("experiment_state-*.json"))


def restore_tuner(folder: Path, study_id: str, tune_name: str) -> tune.Tuner:
    """The Tuner saved in ``folder/tune_name`` (its signature checked first), set to resume
    unfinished and errored trials."""
    tune_path = folder / tune_name
    verify(folder, study_id, tune_name)  # before anything unpickles it
    tuner = tune.Tuner.restore(
        str(tune_path),
        trainable=tune.with_resources(study_trial, trial_placement),
        resume_unfinished=True,
        resume_errored=True,
    )
    sign(folder, tune_name)
    return tuner


def trial_context(record: StudyRecord) -> dict:
    """What every trial needs from the driver (Tune's param space ``ctx``)."""
    return {
        "study_id": record.study_id,
        "parent_run_id": record.parent_run_id,
        "tracking_uri": record.tracking_uri,
        "experiment": record.experiment,
        "env": forwarded_env(record.tracking_uri),
    }


def resume_study(study_id: str, address: str | None = None) -> StudyOutcome:
    """Restore an interrupted study's Tuner: finished trials are not run again and unfinished
    ones continue their MLflow run and Train checkpoint. A sequential study continues at its
    wave (``study_waves``)."""
    folder = study_folder(study_id)
    record = StudyRecord.load(folder)
    sequential = record.spec.get("design") == "sequential"  # the raw record: no validation yet
    tune_path = folder / TUNE_NAME
    if not sequential and tune.Tuner.can_restore(str(tune_path)):
        verify(folder, study_id, TUNE_NAME)  # refused before the parent run is reopened
    restore = not sequential and tune_state_saved(tune_path)
    connect_tracked(record.tracking_uri, address)
    reopen_run(record.tracking_uri, record.parent_run_id)
    if sequential:
        from sparse_rcnn.platform.orchestration.study_waves import run_waves

        return run_waves(record, folder, trial_context(record), resuming=True)
    if restore:
        print(f"resuming study {study_id} from {tune_path}", flush=True)
        tuner = restore_tuner(folder, study_id, TUNE_NAME)
    else:  # killed before Tune saved its state: every trial again, the finished ones reused
        print(f"resuming study {study_id}: no Tune state was saved, starting its trials again "
              "(finished ones are read back from MLflow)", flush=True)  # fmt: skip
        study = record.study()
        trials = tune_trials(study.trials)
        progress = StudyProgress(
            study_id, study.spec.metric, record.max_concurrent_trials, len(trials)
        )
        tuner = new_tuner(trials, trial_context(record), record, folder, TUNE_NAME, progress)
    return _fit(tuner, record, folder)


def fit_grid(tuner: tune.Tuner, record: StudyRecord, folder: Path, tune_name: str):
    """``(ResultGrid, wall seconds)`` of ``tuner.fit()``; an interrupt or a Tune failure closes
    the study's runs with the resume command (then re-raises, a failure as StudyError)."""
    start = time.perf_counter()
    try:
        grid = tuner.fit()
    except (KeyboardInterrupt, SystemExit):
        stop_study(record, "interrupted (Ctrl-C)")
        raise
    except Exception as e:
        stop_study(record, f"{type(e).__name__}: {e}", status="FAILED")
        raise StudyError(f"study {record.study_id} failed: {e}") from e
    finally:
        sign(folder, tune_name)  # the state Tune saved last, whatever ended the fit
    wall = time.perf_counter() - start
    record_timing(folder, wall, record.max_concurrent_trials)
    return grid, wall


def _fit(tuner: tune.Tuner, record: StudyRecord, folder: Path) -> StudyOutcome:
    from sparse_rcnn.platform.orchestration.results import results_table

    grid, wall = fit_grid(tuner, record, folder, TUNE_NAME)
    return close_study(results_table(grid, record), record, folder, wall)


def close_study(rows: list[dict], record: StudyRecord, folder: Path, wall: float) -> StudyOutcome:
    """Write results.parquet and finish the parent run when every trial has a result (ok or
    failed); else close the runs with the resume command."""
    from sparse_rcnn.platform.orchestration.results import write_results
    from sparse_rcnn.platform.tracking.runs import RunLogger

    uri, parent, concurrency = (
        record.tracking_uri,
        record.parent_run_id,
        record.max_concurrent_trials,
    )
    if not all(r["status"] in ("ok", "failed") for r in rows):
        stop_study(record, "interrupted: some trials have no result")
        return StudyOutcome(record.study_id, folder, parent, uri, False, None, wall, concurrency)
    path = write_results(rows, folder / RESULTS_FILE)
    RunLogger(uri, parent).log_artifact(path)
    finish_run(uri, parent, "FINISHED")
    return StudyOutcome(record.study_id, folder, parent, uri, True, path, wall, concurrency)


def stop_study(record: StudyRecord, why: str, status: str = "KILLED") -> None:
    """Close the parent and any trial run left RUNNING, with the resume command in the error."""
    message = f"{why}; resume with: sparse-rcnn study --resume {record.study_id}"
    for run_id in running_trial_runs(record.tracking_uri, record.experiment, record.study_id):
        finish_run(record.tracking_uri, run_id, "KILLED", message)
    finish_run(record.tracking_uri, record.parent_run_id, status, message)
    print(f"study {record.study_id} stopped: {message}", flush=True)

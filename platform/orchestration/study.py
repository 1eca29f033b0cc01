"""A seed-variance study on Ray Tune: every trial is one Ray Train run of the trial's job spec.

Layout of a study folder (``<state dir>/studies/<STUDY_ID>/``)::

    study.json          what resume and report need: the study and base job, the parent MLflow
                        run, the tracking URI, the concurrency
    tune/               Ray Tune's experiment state (``Tuner.restore`` reads it)
    results.parquet     one row per trial, written when the study ends (also a parent-run artifact)
    report.md/.json     written by ``sparse-rcnn report`` (and at the end of ``study``)

Scheduling is FIFO with no early stopping: a scheduler such as ASHA stops the trials whose
intermediate AP is low, so the surviving seeds are a selected sample (smaller spread, inflated
mean) and the stopped ones have no final AP. A seed study must let every trial finish.

Idempotence: each trial's MLflow child run is found again by its study and trial tags. A trial
whose run already holds a result (it finished before the driver died, whether or not Tune had
saved that) reports the stored result instead of training again; an unfinished one continues the
same MLflow run and the same Ray Train run name, so Train resumes from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ray import tune

from sparse_rcnn.platform.errors import PlatformError
from sparse_rcnn.platform.names import InvalidName, check_name, path_under
from sparse_rcnn.platform.orchestration.cluster import (
    ResourceError,
    alive_nodes,
    check_resources,
    cluster_totals,
    worker_bundle,
)
from sparse_rcnn.platform.orchestration.train import (
    JobFailed,
    connect_tracked,
    create_job_run,
    run_job,
)
from sparse_rcnn.platform.orchestration.tune_state import SignTuneState, sign, verify
from sparse_rcnn.platform.spec.job import JobSpec, ScalingSpec
from sparse_rcnn.platform.spec.load import dump_spec, flatten
from sparse_rcnn.platform.spec.study import METRICS, Study, study_from_dict
from sparse_rcnn.platform.state_dir import ENV as STATE_ENV
from sparse_rcnn.platform.state_dir import state_dir
from sparse_rcnn.platform.tracking import names
from sparse_rcnn.platform.tracking.runs import finish_run
from sparse_rcnn.platform.tracking.store import resolve_tracking_uri
from sparse_rcnn.platform.tracking.studies import (
    create_study_run,
    eval_history,
    find_trial_run,
    mark_trial_done,
    reopen_run,
    running_trial_runs,
)

STUDY_FILE = "study.json"
TUNE_NAME = "tune"
RESULTS_FILE = "results.parquet"
TRIAL_DRIVER_CPU = 0.01
"""CPU reserved by each trial's driver (the Tune actor that calls ``TorchTrainer.fit``); the
Train controller reserves none. Taken off the workers' share so trials pack exactly."""


class StudyError(PlatformError, RuntimeError):
    """A study cannot start or resume; the message says why."""


@dataclass
class StudyRecord:
    """``study.json``: everything needed to resume or report a study without its YAML."""

    study_id: str
    spec: dict[str, Any]
    base_job: dict[str, Any]
    parent_run_id: str
    tracking_uri: str
    experiment: str
    max_concurrent_trials: int
    created: float

    def save(self, folder: Path) -> None:
        tmp = folder / (STUDY_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(folder / STUDY_FILE)

    @classmethod
    def load(cls, folder: Path) -> StudyRecord:
        """The record in ``folder``; :class:`StudyError` (one line) when the file is missing,
        not JSON, lacks a field, has a field of the wrong type or names another study."""
        path = folder / STUDY_FILE
        if not path.is_file():
            raise StudyError(f"no study at {folder} ({STUDY_FILE} missing)")
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise StudyError(f"{path} is not valid JSON ({e}); the study cannot be read") from None
        if not isinstance(data, dict):
            raise StudyError(f"{path} must hold a JSON object; the study cannot be read")
        fields = [f.name for f in dataclasses.fields(cls)]
        missing = [k for k in fields if k not in data]
        unknown = [k for k in data if k not in fields]
        if missing or unknown:
            what = "; ".join(
                f"{label}: {', '.join(keys)}"
                for label, keys in (("missing", missing), ("unknown", unknown))
                if keys
            )
            raise StudyError(f"{path} is not a study record ({what})")
        for key, kind in _RECORD_TYPES.items():
            if not isinstance(data[key], kind) or isinstance(data[key], bool):
                raise StudyError(f"{path}: {key} has the wrong type ({type(data[key]).__name__})")
        try:
            check_name("study id", data["study_id"])
            check_name("experiment name", data["experiment"])
        except InvalidName as e:
            raise StudyError(f"{path}: {e}") from None
        if data["study_id"] != folder.name:
            raise StudyError(f"{path} names study {data['study_id']!r}, not {folder.name!r}")
        return cls(**data)

    def study(self) -> Study:
        return study_from_dict(self.spec, self.base_job)


_RECORD_TYPES: dict[str, type | tuple[type, ...]] = {
    "study_id": str,
    "spec": dict,
    "base_job": dict,
    "parent_run_id": str,
    "tracking_uri": str,
    "experiment": str,
    "max_concurrent_trials": int,
    "created": (int, float),
}


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


def studies_root() -> Path:
    return state_dir() / "studies"


def study_folder(study_id: str) -> Path:
    """The folder of an existing study; :class:`~sparse_rcnn.platform.names.InvalidName` or
    :class:`~sparse_rcnn.platform.names.PathEscape` for an id that could leave the studies
    folder, :class:`StudyError` for an unknown one."""
    folder = path_under(studies_root(), study_id, "study id")
    if not (folder / STUDY_FILE).is_file():
        known = sorted(p.name for p in studies_root().glob("*") if (p / STUDY_FILE).is_file())
        hint = f"; known studies: {', '.join(known[-10:])}" if known else ""
        raise StudyError(f"unknown study {study_id!r} (no {folder / STUDY_FILE}){hint}")
    return folder


def new_study_id(name: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    study_id = f"{name}-{stamp}"
    n = 1
    while (studies_root() / study_id).exists():
        n += 1
        study_id = f"{name}-{stamp}-{n}"
    return study_id


# -- resources ------------------------------------------------------------------------------


def _trial_need(scaling: ScalingSpec) -> dict[str, float]:
    """What one trial's workers reserve in total."""
    need: dict[str, float] = {}
    for k, v in worker_bundle(scaling).items():
        need[k] = need.get(k, 0.0) + v * scaling.num_workers
    return need


def pack_trials(study: Study, totals: dict[str, float]) -> tuple[int, list[dict[str, Any]]]:
    """``(max_concurrent_trials, job dicts)``: how many trials the cluster ``totals`` hold at
    once, and each trial's job with its workers' CPU lowered by the trial driver's share when
    the job leaves ``resources_per_worker`` to Ray's default (1 CPU), so that N trials use
    exactly N x workers CPUs. Raises :class:`ResourceError` when not even one trial fits."""
    jobs = []
    need: dict[str, float] = {}
    for plan in study.trials:
        job = json.loads(json.dumps(plan.job))
        scaling = job["scaling"]
        if not scaling.get("resources_per_worker"):
            share = 1.0 - TRIAL_DRIVER_CPU / scaling["num_workers"]
            scaling["resources_per_worker"] = {"CPU": round(share, 4)}
            if scaling.get("use_gpu"):
                scaling["resources_per_worker"]["GPU"] = 1.0
        jobs.append(job)
        trial_need = _trial_need(ScalingSpec.model_validate(scaling))
        trial_need["CPU"] = trial_need.get("CPU", 0.0) + TRIAL_DRIVER_CPU
        for k, v in trial_need.items():
            need[k] = max(need.get(k, 0.0), v)
    fits = []
    for k, v in need.items():
        if v <= 0:
            continue
        have = totals.get(k, 0.0)
        n = math.floor(have / v + 1e-6)
        if n < 1:
            raise ResourceError(
                f"one trial needs {v:g} {k} but the cluster has {have:g}; lower "
                "scaling.num_workers or scaling.resources_per_worker"
            )
        fits.append(n)
    concurrency = min([len(study.trials), *fits])
    if study.spec.max_concurrent_trials:
        concurrency = min(concurrency, study.spec.max_concurrent_trials)
    return concurrency, jobs


# -- the trial ------------------------------------------------------------------------------


def study_trial(config: dict[str, Any]) -> None:
    """One trial, run by Tune. Reports the trial's result once, at the end; Train's per-epoch
    reports reach Tune on the way through ``TuneReportCallback``."""
    from ray.tune.integration.ray_train import TuneReportCallback

    started_at = time.time()  # the slot's time line, for bench/study_packing.py
    plan, ctx = config["trial"], config["ctx"]
    os.environ.update(ctx["env"])  # the driver's state dir and tracking URI, on any node
    uri, experiment, study_id = ctx["tracking_uri"], ctx["experiment"], ctx["study_id"]
    found = find_trial_run(uri, experiment, study_id, plan["key"])
    if found is not None and found[1] is not None:
        tune.report({**found[1], "reused": 1})  # finished earlier: never trained twice
        return
    spec = JobSpec.model_validate(plan["job"])
    tags = {
        names.TAG_STUDY_ID: study_id,
        names.TAG_STUDY_ROLE: "trial",
        names.TAG_STUDY_TRIAL: plan["key"],
        names.TAG_STUDY_SETTING: plan["setting_label"],
        names.TAG_STUDY_SOURCE: plan["source"],
    }
    if found is None:
        run_id = create_job_run(spec, uri, tags, parent_run_id=ctx["parent_run_id"])
    else:
        run_id = found[0]
        reopen_run(uri, run_id)
    start = time.perf_counter()
    result: dict[str, Any] = {"final": 1, "trial_key": plan["key"], "run_id": run_id}
    try:
        outcome = run_job(
            spec,
            run_id=run_id,
            train_name=f"{study_id}-{plan['key']}",
            callbacks=[TuneReportCallback()],
        )
        result["status"] = "ok"
        result.update({m: float(outcome.metrics.get(m, math.nan)) for m in METRICS})
    except JobFailed as e:  # the run is already FAILED in MLflow; the study goes on
        result["status"] = "failed"
        result["error"] = str(e)[:2000]
        result.update({m: math.nan for m in METRICS})
    result["wall_s"] = time.perf_counter() - start
    result["eval_history"] = json.dumps(eval_history(uri, run_id, METRICS))
    result.update(started_at=started_at, ended_at=time.time())
    mark_trial_done(uri, run_id, result)
    tune.report(result)


# -- progress -------------------------------------------------------------------------------


class StudyProgress(tune.Callback):
    """One terminal line whenever a trial starts, evaluates or ends: trials done / running /
    pending, the best and worst final AP so far, elapsed time and an ETA."""

    def __init__(self, study_id: str, metric: str, concurrency: int, total: int):
        self.study_id, self.metric = study_id, metric
        self.concurrency, self.total = concurrency, total
        self._start: float | None = None
        self._finals: dict[str, float] = {}
        self._walls: list[float] = []
        self._started: dict[str, float] = {}

    def __getstate__(self) -> dict[str, Any]:  # restored studies start a fresh clock
        return {
            "study_id": self.study_id,
            "metric": self.metric,
            "concurrency": self.concurrency,
            "total": self.total,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._started[trial.trial_id] = time.monotonic()
        self._print(trials, f"started {trial.config['trial']['key']}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        key = trial.config["trial"]["key"]
        if result.get("final"):
            value = result.get(self.metric, math.nan)
            self._finals[key] = value
            if not result.get("reused"):
                self._walls.append(float(result.get("wall_s", 0.0)))
            status = result.get("status", "?")
            what = f"{100 * value:.2f}" if status == "ok" else status
            self._print(trials, f"{key} finished: {self.metric} {what}")
        elif "eval_epoch" in result:
            self._print(
                trials,
                f"{key} epoch {int(result['eval_epoch'])}: "
                f"{self.metric} {100 * result.get(self.metric, math.nan):.2f}",
            )

    def on_trial_error(self, iteration, trials, trial, **info):
        self._print(trials, f"{trial.config['trial']['key']} errored")

    def _print(self, trials, event: str) -> None:
        now = time.monotonic()
        self._start = self._start or now
        # Tune creates trials lazily (max_concurrent_trials): not-yet-created ones are pending.
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        running = [t for t in trials if t.status == "RUNNING"]
        total = max(self.total, len(trials))
        pending = total - done - len(running)
        finite = [v for v in self._finals.values() if math.isfinite(v)]
        span = (
            f" | {self.metric} best {100 * max(finite):.2f} worst {100 * min(finite):.2f}"
            if finite
            else ""
        )
        eta = ""
        if self._walls:
            avg = sum(self._walls) / len(self._walls)
            left = pending * avg + sum(
                max(avg - (now - self._started.get(t.trial_id, now)), 0.0) for t in running
            )
            eta = f", ETA {_clock(left / max(self.concurrency, 1))}"
        print(
            f"[{self.study_id}] {done}/{total} done, {len(running)} running, "
            f"{pending} pending{span} | {_clock(now - self._start)} elapsed{eta} | {event}",
            flush=True,
        )


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


# -- driver ---------------------------------------------------------------------------------


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
    env = {k: v for k, v in os.environ.items() if k.startswith("SPARSE_RCNN_")}
    env.update({STATE_ENV: str(state_dir()), "MLFLOW_TRACKING_URI": uri})
    ctx = {
        "study_id": study_id,
        "parent_run_id": parent,
        "tracking_uri": uri,
        "experiment": base.mlflow.experiment,
        "env": env,
    }
    trials = [{**p.to_dict(), "job": job} for p, job in zip(study.trials, jobs, strict=True)]
    print(
        f"study {study_id}: {len(study.trials)} trials ({len(study.settings)} settings x "
        f"{len(study.trials) // max(len(study.settings), 1)} runs), {concurrency} at a time; "
        f"folder {folder}",
        flush=True,
    )
    tuner = tune.Tuner(
        tune.with_resources(study_trial, {"cpu": TRIAL_DRIVER_CPU}),
        param_space={"trial": tune.grid_search(trials), "ctx": ctx},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrency),
        run_config=tune.RunConfig(
            name=TUNE_NAME,
            storage_path=str(folder),
            verbose=0,
            callbacks=[
                StudyProgress(study_id, study.spec.metric, concurrency, len(study.trials)),
                SignTuneState(study_id),
            ],
            failure_config=tune.FailureConfig(max_failures=study.spec.max_failures),
        ),
    )
    sign(folder, TUNE_NAME)  # tuner.pkl, written by the Tuner's constructor
    return _fit(tuner, record, folder, concurrency)


def resume_study(study_id: str, address: str | None = None) -> StudyOutcome:
    """Restore an interrupted study's Tuner: finished trials are not run again and unfinished
    ones continue their MLflow run and Train checkpoint."""
    folder = study_folder(study_id)
    record = StudyRecord.load(folder)
    tune_path = folder / TUNE_NAME
    if not tune.Tuner.can_restore(str(tune_path)):
        raise StudyError(f"study {study_id}: no Tune state to restore in {tune_path}")
    verify(folder, study_id, TUNE_NAME)  # before anything unpickles it
    connect_tracked(record.tracking_uri, address)
    reopen_run(record.tracking_uri, record.parent_run_id)
    print(f"resuming study {study_id} from {tune_path}", flush=True)
    tuner = tune.Tuner.restore(
        str(tune_path),
        trainable=tune.with_resources(study_trial, {"cpu": TRIAL_DRIVER_CPU}),
        resume_unfinished=True,
        resume_errored=True,
    )
    sign(folder, TUNE_NAME)
    return _fit(tuner, record, folder, record.max_concurrent_trials)


def _fit(tuner: tune.Tuner, record: StudyRecord, folder: Path, concurrency: int) -> StudyOutcome:
    from sparse_rcnn.platform.orchestration.results import results_table, write_results
    from sparse_rcnn.platform.tracking.runs import RunLogger

    uri, parent = record.tracking_uri, record.parent_run_id
    start = time.perf_counter()
    try:
        grid = tuner.fit()
    except (KeyboardInterrupt, SystemExit):
        _stop(record, "interrupted (Ctrl-C)")
        raise
    except Exception as e:
        _stop(record, f"{type(e).__name__}: {e}", status="FAILED")
        raise StudyError(f"study {record.study_id} failed: {e}") from e
    finally:
        sign(folder, TUNE_NAME)  # the state Tune saved last, whatever ended the fit
    wall = time.perf_counter() - start
    _record_timing(folder, wall, concurrency)
    table = results_table(grid, record)
    finished = all(r["status"] in ("ok", "failed") for r in table)
    if not finished:
        _stop(record, "interrupted: some trials have no result")
        return StudyOutcome(record.study_id, folder, parent, uri, False, None, wall, concurrency)
    path = write_results(table, folder / RESULTS_FILE)
    RunLogger(uri, parent).log_artifact(path)
    finish_run(uri, parent, "FINISHED")
    return StudyOutcome(record.study_id, folder, parent, uri, True, path, wall, concurrency)


def _record_timing(folder: Path, wall_s: float, concurrency: int) -> None:
    """Append this ``Tuner.fit()``'s wall time to ``timing.json`` (one entry per start or
    resume), for packing-efficiency measurements (``bench/study_packing.py``)."""
    path = folder / "timing.json"
    fits = json.loads(path.read_text()) if path.is_file() else []
    fits.append({"wall_s": wall_s, "concurrency": concurrency, "ended": time.time()})
    path.write_text(json.dumps(fits, indent=1))


def _stop(record: StudyRecord, why: str, status: str = "KILLED") -> None:
    """Close the parent and any trial run left RUNNING, with the resume command in the error."""
    message = f"{why}; resume with: sparse-rcnn study --resume {record.study_id}"
    for run_id in running_trial_runs(record.tracking_uri, record.experiment, record.study_id):
        finish_run(record.tracking_uri, run_id, "KILLED", message)
    finish_run(record.tracking_uri, record.parent_run_id, status, message)
    print(f"study {record.study_id} stopped: {message}", flush=True)

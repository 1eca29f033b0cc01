"""A study's trial function, which Ray Tune runs once per trial.

A one-worker trial trains in the trial's own process
(:func:`~sparse_rcnn.platform.orchestration.in_process.run_job_in_process`; the study reuses
trial actors, so the next trial starts without a new process); a larger one runs its job on Ray
Train (:func:`~sparse_rcnn.platform.orchestration.train.run_job`). Both report every epoch's
metrics to Tune and the trial's result once, at the end.

Idempotence: each trial's MLflow child run is found again by its study and trial tags. A trial
whose run already holds a result (it finished before the driver died, whether or not Tune had
saved that) reports the stored result instead of training again; an unfinished one continues the
same MLflow run and the same run name (``<study id>-<trial key>``), so it resumes from its last
checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

from ray import tune

from sparse_rcnn.platform.orchestration.in_process import run_job_in_process, runs_in_process
from sparse_rcnn.platform.orchestration.train import JobFailed, create_job_run, run_job
from sparse_rcnn.platform.spec.job import JobSpec
from sparse_rcnn.platform.spec.study import METRICS
from sparse_rcnn.platform.tracking import names
from sparse_rcnn.platform.tracking.studies import (
    eval_history,
    find_trial_run,
    mark_trial_done,
    reopen_run,
    trial_params,
)


def study_trial(config: dict[str, Any]) -> None:
    """One trial, run by Tune (see the module doc)."""
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
        run_id = create_job_run(
            spec, uri, tags, parent_run_id=ctx["parent_run_id"], run_name=plan["run_name"],
            extra_params=trial_params(plan),
        )  # fmt: skip
    else:
        run_id = found[0]
        reopen_run(uri, run_id)
    start = time.perf_counter()
    result: dict[str, Any] = {"final": 1, "trial_key": plan["key"], "run_id": run_id}
    name = f"{study_id}-{plan['key']}"
    try:
        if runs_in_process(spec):
            outcome = run_job_in_process(spec, run_id, uri, name, on_report=tune.report)
        else:
            from ray.tune.integration.ray_train import TuneReportCallback

            # The study's progress line reports each epoch; rank 0's own line would arrive
            # with Ray's "(RayTrainWorker pid=...)" prefix.
            outcome = run_job(spec, run_id=run_id, train_name=name,
                              callbacks=[TuneReportCallback()], echo=False)  # fmt: skip
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

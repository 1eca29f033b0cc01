"""What one seed-study trial reserves, and how many trials the cluster runs at once.

A trial is a Tune trial actor. A one-worker trial trains in that actor
(:func:`~sparse_rcnn.platform.orchestration.in_process.runs_in_process`), which reserves the
worker's bundle (1 CPU by default); a larger trial's actor is only its driver (it calls
``TorchTrainer.fit``, :data:`TRIAL_DRIVER_CPU`) and its Ray Train workers reserve their own
placement group, outside Tune's accounting, so Tune alone would start more trials than fit and
leave them waiting. The study therefore sets ``max_concurrent_trials`` from the cluster's totals
and the largest trial (:func:`pack_trials`), and Tune places each trial actor with
:func:`trial_placement`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ray.tune import PlacementGroupFactory

from sparse_rcnn.platform.orchestration.cluster import ResourceError, job_resources, worker_bundle
from sparse_rcnn.platform.orchestration.in_process import runs_in_process
from sparse_rcnn.platform.spec.job import JobSpec
from sparse_rcnn.platform.spec.study import Study

TRIAL_DRIVER_CPU = 0.01
"""CPU reserved by the driver of a trial on Ray Train (the Tune actor that calls
``TorchTrainer.fit``); the Train controller reserves none. Taken off the workers' share so
trials pack exactly."""


def trial_job(job: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``job`` (a JSON-able job spec) as its trial runs it: a trial on Ray Train whose
    job leaves ``resources_per_worker`` to Ray's default (1 CPU) has its workers' CPU lowered by
    the driver's share, so that N trials use exactly N x workers CPUs."""
    job = json.loads(json.dumps(job))
    scaling = job["scaling"]
    if not scaling.get("resources_per_worker") and not runs_in_process(JobSpec.model_validate(job)):
        # Rounded down to Ray's resource precision (1e-4): rounded to nearest, 3 workers x
        # 0.9967 plus the driver would need 3.0001 CPUs and not fit on 3.
        share = math.floor((1.0 - TRIAL_DRIVER_CPU / scaling["num_workers"]) * 1e4 + 1e-6) / 1e4
        scaling["resources_per_worker"] = {"CPU": share}
        if scaling.get("use_gpu"):
            scaling["resources_per_worker"]["GPU"] = 1.0
    return job


def trial_actor_resources(job: dict[str, Any]) -> dict[str, float]:
    """What the Tune trial actor of ``job`` (as :func:`trial_job` returns it) reserves: the
    worker's bundle when it trains in process, else the driver's CPU."""
    spec = JobSpec.model_validate(job)
    if runs_in_process(spec):
        return worker_bundle(spec.scaling)
    return {"CPU": TRIAL_DRIVER_CPU}


def trial_resources(job: dict[str, Any]) -> dict[str, float]:
    """Everything one trial of ``job`` (as :func:`trial_job` returns it) reserves: its actor
    and, on Ray Train, all of its workers."""
    spec = JobSpec.model_validate(job)
    need = trial_actor_resources(job)
    if not runs_in_process(spec):
        for k, v in job_resources(spec.scaling).items():
            need[k] = need.get(k, 0.0) + v
    return need


def trial_placement(config: dict[str, Any]) -> PlacementGroupFactory:
    """Tune's resource request for the trial of ``config`` (the param space of a study: its
    ``trial`` holds the job): one bundle, :func:`trial_actor_resources`. Equal requests let Tune
    hand a finished trial's actor to the next trial (``reuse_actors``)."""
    return PlacementGroupFactory([trial_actor_resources(config["trial"]["job"])])


def pack_trials(study: Study, totals: dict[str, float]) -> tuple[int, list[dict[str, Any]]]:
    """``(max_concurrent_trials, job dicts)``: how many trials the cluster ``totals`` hold at
    once, and each trial's job as :func:`trial_job` returns it. Raises :class:`ResourceError`
    when not even one trial fits."""
    jobs = [trial_job(plan.job) for plan in study.trials]
    need: dict[str, float] = {}
    for job in jobs:
        for k, v in trial_resources(job).items():
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

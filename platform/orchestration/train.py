"""A job as a Ray Train run: the driver side (:func:`run_job`) and the per-worker function.

Driver: check files and local resources (before Ray starts), prepare the dataset, connect, check
the cluster's resources, create the MLflow run, ``TorchTrainer.fit()``,
log the final checkpoint, close the run (FINISHED / FAILED / KILLED). Worker: rebuild the spec,
wrap Ray's checkpoint API in a :class:`Reporter`, call the plain engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import ray.train
import torch
from pydantic import ValidationError
from ray.train.torch import TorchConfig, TorchTrainer

from sparse_rcnn.models.config import ModelConfig
from sparse_rcnn.platform.checkpoints.native import save_checkpoint
from sparse_rcnn.platform.data.prepare import DatasetPaths, synthetic_dataset
from sparse_rcnn.platform.engine.distributed import DistContext
from sparse_rcnn.platform.engine.loop import RunRefused, run_training
from sparse_rcnn.platform.engine.train_step import NonFiniteLossError
from sparse_rcnn.platform.errors import MissingFileError, PlatformError
from sparse_rcnn.platform.orchestration.cluster import (
    alive_nodes,
    check_resources,
    connect,
    forwarded_env,
)
from sparse_rcnn.platform.orchestration.preflight import preflight
from sparse_rcnn.platform.orchestration.tracking_guard import StopWhenTrackingLost
from sparse_rcnn.platform.redact import redact
from sparse_rcnn.platform.spec.job import JobSpec
from sparse_rcnn.platform.spec.load import dump_spec, flatten, format_validation_error
from sparse_rcnn.platform.state_dir import state_dir
from sparse_rcnn.platform.tracking import names
from sparse_rcnn.platform.tracking.outbox import (
    OutboxLogger,
    TrackingUnavailable,
    outbox_folder,
    server_answers,
)
from sparse_rcnn.platform.tracking.runs import RunLogger, create_run, finish_run, submission_id
from sparse_rcnn.platform.tracking.store import (
    credential_env,
    is_local_store,
    resolve_tracking_uri,
)

CHECKPOINT_FILE = "state.pt"


class JobFailed(PlatformError, RuntimeError):
    """The training run ended in error; the MLflow run is marked FAILED with the message."""


class JobInterrupted(KeyboardInterrupt):
    """Ctrl-C (or ``jobs stop``) ended the run: its MLflow run is marked KILLED and the Ray Train
    checkpoints written so far are kept; ``checkpoint`` is the last one, or None."""

    def __init__(self, run_id: str, checkpoint: str | None):
        super().__init__(run_id)
        self.run_id, self.checkpoint = run_id, checkpoint

    def summary(self) -> str:
        kept = f"last checkpoint {self.checkpoint}" if self.checkpoint else "no checkpoint yet"
        return f"interrupted: MLflow run {self.run_id} marked KILLED; {kept}"


@dataclass
class JobOutcome:
    run_id: str
    tracking_uri: str
    metrics: dict[str, float]
    checkpoint_path: str | None
    storage_path: str


def dataset_paths(spec: JobSpec) -> DatasetPaths:
    d = spec.dataset
    if d.kind == "synthetic":
        s = d.synthetic
        return synthetic_dataset(state_dir() / "datasets", **s.model_dump())
    paths = DatasetPaths(d.train_ann, d.train_images, d.val_ann, d.val_images)
    for field, value in dataclasses.asdict(paths).items():
        if "://" not in value and not Path(value).exists():
            raise MissingFileError(f"dataset.{field}: {value} does not exist")
    return paths


class RayReporter:
    """The engine's Reporter on Ray Train: checkpoints through ``ray.train.report``."""

    def latest_checkpoint(self) -> dict[str, Any] | None:
        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            return None
        with ckpt.as_directory() as d:
            return torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)

    def report(self, metrics: dict[str, float], checkpoint: dict[str, Any] | None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            ray_ckpt = None
            if checkpoint is not None:
                torch.save(checkpoint, Path(tmp) / CHECKPOINT_FILE)
                ray_ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ray_ckpt)


def match_threads_to_cpus() -> None:
    """One torch thread per CPU this Ray worker or actor reserved (at least one), set explicitly
    instead of relying on the ``OMP_NUM_THREADS`` Ray exports at process start: N one-CPU
    workers (or study trials) on N cores must never run more compute threads than cores."""
    if not ray.is_initialized():  # no Ray here (get_runtime_context would start one)
        return
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except AssertionError:  # a driver, not a worker or actor: torch decides
        return
    if cpus:
        torch.set_num_threads(max(1, math.floor(cpus + 1e-6)))


def train_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Runs on every Ray Train worker. Returns rank 0's outcome to the driver. A diverged run
    (``{"status": "diverged"}``) and a run its own spec stops (``{"status": "refused"}``: the
    spec does not validate here, or :class:`RunRefused`) return on every rank (all ranks agree)
    instead of raising, so the failure policy does not restart a run that would fail again."""
    try:
        spec = JobSpec.model_validate(config["spec"])
    except ValidationError as e:
        return {"status": "refused", "error": format_validation_error(e, "job spec")}
    match_threads_to_cpus()
    paths = DatasetPaths(**config["paths"])
    if spec.dataset.kind == "synthetic" and not Path(paths.train_ann).exists():
        # A worker on another node: generation is deterministic, so it makes its own copy.
        paths = dataset_paths(spec)
    device = "cpu"
    if spec.scaling.use_gpu and torch.cuda.is_available():
        device = ray.train.torch.get_device()
    dist = DistContext.current(device)
    placement = dist.gather(this_node())  # rank 0: every rank's node, in rank order
    logger = None
    if dist.is_main:  # an outbox: an unreachable server never holds training up
        uri, run_id = config["tracking_uri"], config["run_id"]
        set_run_tags(uri, run_id, worker_node_tags(placement or []))
        logger = OutboxLogger(uri, run_id, outbox_folder(config.get("outbox") or state_dir(),
                                                         run_id))  # fmt: skip
    try:
        result = run_training(spec, paths, StopWhenTrackingLost(RayReporter(), logger, dist),
                              logger, dist, echo=config.get("echo", True))  # fmt: skip
    except NonFiniteLossError as e:
        return _closed(logger, {"status": "diverged", "error": str(e)})
    except RunRefused as e:
        return _closed(logger, {"status": "refused", "error": str(e)})
    except TrackingUnavailable as e:  # on every rank: the run stops at a checkpoint
        if logger is not None:
            with contextlib.suppress(TrackingUnavailable):
                logger.close(wait_s=0)  # stops the sender; the journal stays
        return {"status": "tracking_lost", "error": str(e)}
    if logger is not None and result.resumed_from_epoch is not None:
        set_run_tags(config["tracking_uri"], config["run_id"],
             {names.TAG_RESUMED_AFTER_EPOCH: str(result.resumed_from_epoch + 1)})  # fmt: skip
    outcome = {"status": "ok", "metrics": result.metrics, "resumed_from": result.resumed_from_epoch}
    return _closed(logger, outcome)


def set_run_tags(uri: str, run_id: str, tags: dict[str, str]) -> None:
    """Informational run tags (where the workers ran), set directly: a server that does not
    answer right now costs the tags, never the run (the metrics go through the outbox)."""
    with contextlib.suppress(Exception):
        RunLogger(uri, run_id).set_tags(tags)


def _closed(logger: OutboxLogger | None, outcome: dict[str, Any]) -> dict[str, Any]:
    """``outcome`` once rank 0's pending tracking writes are delivered; a ``tracking_lost``
    outcome when they cannot be (the server stays away past the bound)."""
    if logger is None:
        return outcome
    try:
        logger.close()
    except TrackingUnavailable as e:
        error = f"training ended ({outcome['status']}), but {e}"
        return {"status": "tracking_lost", "error": error}
    return outcome


def this_node() -> tuple[str, str]:
    """``(node id, node IP)`` of the Ray node this worker or actor runs on."""
    return ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address()


def worker_node_tags(nodes: list[tuple[str, str]]) -> dict[str, str]:
    """The run tags naming the nodes of its workers (``(node id, IP)`` in rank order),
    comma-separated: ``ray.worker_node_ids`` and ``ray.worker_node_ips``."""
    return {
        names.TAG_WORKER_NODE_IDS: ",".join(node_id for node_id, _ in nodes),
        names.TAG_WORKER_NODE_IPS: ",".join(ip for _, ip in nodes),
    }


def run_job(
    spec: JobSpec,
    address: str | None = None,
    run_tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    *,
    run_id: str | None = None,
    train_name: str | None = None,
    callbacks: list | None = None,
    echo: bool = True,
) -> JobOutcome:
    """Run ``spec`` on Ray Train and track it in MLflow; raises :class:`JobFailed` on failure
    (after marking the run FAILED) and re-raises KeyboardInterrupt after marking it KILLED.

    ``run_id`` continues an existing MLflow run (created by :func:`create_job_run`) instead of
    creating one; ``train_name`` names the Ray Train run, and the same name and storage path
    resume from that run's last checkpoint; ``callbacks`` are Ray Train ``UserCallback``s;
    ``echo=False`` keeps rank 0's per-epoch line off the console (a study prints its own)."""
    # Files and (for a local Ray) resources first: Ray takes up to a minute to start.
    preflight([spec], address)
    paths = dataset_paths(spec)
    uri = resolve_tracking_uri(spec.mlflow.tracking_uri)
    if spec.mlflow.tracking_uri:  # without the credentials resolve_tracking_uri took out
        spec = spec.model_copy(
            update={"mlflow": spec.mlflow.model_copy(update={"tracking_uri": uri})}
        )
    connect_tracked(uri, address)
    check_resources(spec.scaling)
    if run_id is None:
        run_id = create_job_run(spec, uri, run_tags, parent_run_id)
    storage = spec.storage_path or str(state_dir() / "ray_results")
    name = train_name or f"{spec.name}-{run_id[:12]}"
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={
            "spec": spec.model_dump(mode="json"),
            "run_id": run_id,
            "tracking_uri": uri,
            "paths": dataclasses.asdict(paths),
            "echo": echo,
            # rank 0's undelivered tracking writes: beside the checkpoints when local
            "outbox": None if "://" in storage else str(Path(storage) / name),
        },  # fmt: skip
        scaling_config=ray.train.ScalingConfig(
            num_workers=spec.scaling.num_workers,
            use_gpu=spec.scaling.use_gpu,
            resources_per_worker=spec.scaling.resources_per_worker or None,
        ),  # fmt: skip
        torch_config=TorchConfig(backend=process_group_backend(spec.scaling.use_gpu)),
        run_config=ray.train.RunConfig(
            name=name,
            callbacks=callbacks or None,
            storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            worker_runtime_env={"env_vars": forwarded_env(uri)},
            # Ray Train logs every report at INFO; the engine prints one line per epoch instead.
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        ),
    )
    try:
        result = trainer.fit()
    except (KeyboardInterrupt, SystemExit):
        # Ctrl-C, or `jobs stop` (Ray Train's SIGINT handler aborts and raises SystemExit).
        finish_run(uri, run_id, "KILLED", "interrupted (Ctrl-C or jobs stop)")
        raise JobInterrupted(run_id, last_checkpoint(storage, name)) from None
    except Exception as e:  # TrainingFailedError and anything the driver hit
        message = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
        finish_run(uri, run_id, "FAILED", message)
        raise JobFailed(redact(f"training run {run_id} failed: {e}")) from e
    outcome = result.return_value or {}
    if outcome.get("status") == "tracking_lost":  # the run is closed only if its server answers
        if server_answers(uri):
            finish_run(uri, run_id, "FAILED", outcome["error"])
        raise JobFailed(f"training run {run_id}: {outcome['error']}; checkpoints in "
                        f"{Path(storage) / name}")  # fmt: skip
    if outcome.get("status") in ("diverged", "refused"):
        finish_run(uri, run_id, "FAILED", outcome["error"])
        raise JobFailed(f"training run {run_id} stopped: {outcome['error']}")
    checkpoint_path = None
    if result.checkpoint is not None:
        with result.checkpoint.as_directory() as d:
            state = torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
        log_final_checkpoint(uri, run_id, state, spec)
        checkpoint_path = result.checkpoint.path
    finish_run(uri, run_id, "FINISHED")
    return JobOutcome(run_id, uri, outcome.get("metrics", {}), checkpoint_path, result.path)


def last_checkpoint(storage: str, name: str) -> str | None:
    """The newest ``checkpoint_<timestamp>`` folder of the Ray Train run ``name``, if local."""
    if "://" in storage:
        return None
    found = sorted(p for p in (Path(storage) / name).glob("checkpoint_*") if p.is_dir())
    return str(found[-1]) if found else None


def connect_tracked(uri: str, address: str | None = None) -> None:
    """Connect to Ray with :func:`forwarded_env` and the MLflow credentials in every worker's
    environment; raise :class:`JobFailed` when several nodes would each write their own local
    MLflow store."""
    connect(address, {**forwarded_env(uri), **credential_env()})
    nodes = len(alive_nodes())
    if nodes > 1 and is_local_store(uri):
        raise JobFailed(
            f"this Ray cluster has {nodes} nodes but MLflow tracking points to a "
            f"local store ({uri}); each node would write its own files. Start an MLflow server "
            "and set mlflow.tracking_uri (or MLFLOW_TRACKING_URI)."
        )


def ray_job_id() -> str | None:
    """The id `sparse-rcnn jobs list` shows: the submission id (``ray-submit-...``) inside a
    submitted job, else Ray's internal job id (a local driver has no submission); None without
    a Ray (``get_runtime_context`` would start one)."""
    found = submission_id() or os.environ.get("RAY_JOB_ID")
    if found is None and ray.is_initialized():
        found = ray.get_runtime_context().get_job_id()
    return str(found) if found else None


def create_job_run(spec: JobSpec, uri: str, run_tags: dict[str, str] | None = None,
                   parent_run_id: str | None = None, *, run_name: str | None = None,
                   extra_params: dict[str, Any] | None = None) -> str:  # fmt: skip
    """Create the job's MLflow run (RUNNING) with the resolved spec (and ``extra_params``) as
    params and artifact, the seeds, Ray job id and ``run_tags`` as tags; returns its id.
    ``run_name`` overrides the spec's (a study names trials by setting and seed)."""
    seeds = spec.seeds.resolved()
    tags = {f"{names.TAG_SEED_PREFIX}{k}": str(v) for k, v in seeds.items()}
    if (job_id := ray_job_id()) is not None:
        tags[names.TAG_RAY_JOB_ID] = job_id
    tags.update(run_tags or {})
    return create_run(
        uri, spec.mlflow.experiment, run_name or spec.mlflow.run_name or spec.name,
        params={**flatten(spec.model_dump(mode="json")), **(extra_params or {})}, tags=tags,
        spec_yaml=dump_spec(spec), parent_run_id=parent_run_id,
    )  # fmt: skip


def process_group_backend(use_gpu: bool) -> str:
    """The torch.distributed backend Ray Train initialises on every worker. On GPUs, NCCL for
    CUDA tensors (DDP's gradients) and gloo for CPU tensors, so the engine's per-step scalar
    and object collectives (box count, non-finite flag, detections) stay on the CPU instead of
    each forcing a GPU synchronisation (``DistContext`` picks the device from the group)."""
    return "cpu:gloo,cuda:nccl" if use_gpu else "gloo"


def log_final_checkpoint(uri: str, run_id: str, state: dict[str, Any], spec: JobSpec) -> None:
    """Convert the engine's last checkpoint (``state``) to our model format and log it as the
    run's ``checkpoint/model.pt``."""
    cfg = ModelConfig.from_dict(state["model_config"])
    provenance = {"source": f"mlflow run {run_id}", "job": spec.name, "epoch": state["epoch"]}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.pt"
        save_checkpoint(out, state["model"], cfg, provenance)
        RunLogger(uri, run_id).log_artifact(out, names.ARTIFACT_CHECKPOINT_DIR)

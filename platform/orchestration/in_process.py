"""A one-worker job run in the calling process: a study trial inside its Ray Tune trial actor.

Ray Train gives a one-worker job nothing the engine needs (no process group, one rank) but costs
a controller, a worker group and a fresh process that imports torch: about 20 s per trial on
2 cores (BENCHMARKS.md, issue 12). Here the trial's own process runs the same engine with the
same MLflow run logic as :func:`~sparse_rcnn.platform.orchestration.train.run_job`:

- checkpoints: the engine's checkpoint dicts, written by a
  :class:`~sparse_rcnn.platform.engine.local_reporter.LocalReporter` to
  ``<storage_path>/<name>/`` (the folder Ray Train would use for the run ``name``), the two
  newest kept; the same name resumes from the newest, so a trial interrupted with its driver
  continues from its last checkpoint;
- failures: ``max_failures`` restarts from the last checkpoint, as Ray Train's failure policy;
  a diverged or refused run, and a checkpoint that cannot be written (a full disk), are not
  restarted; the run is closed FINISHED, FAILED (with the error, then
  :class:`~sparse_rcnn.platform.orchestration.train.JobFailed`) or KILLED;
- tracking: through an :class:`~sparse_rcnn.platform.tracking.outbox.OutboxLogger` journalled
  in ``<storage_path>/<name>/tracking-outbox/<run id>``, so an unreachable tracking server
  never holds training up; the run is closed only once every write is delivered. A server
  away past ``SPARSE_RCNN_TRACKING_OUTAGE_S`` stops the run at its next checkpoint
  (:mod:`~sparse_rcnn.platform.orchestration.tracking_guard`) with one line naming the server,
  the kept writes and the checkpoints; the same name resumes, delivers them and closes the run;
- the final checkpoint is logged as ``checkpoint/model.pt``; every epoch's metrics also go to
  ``on_report`` (``ray.tune.report`` in a trial).

Jobs whose storage is not a local path (``s3://...``) or that ask for more than one worker run
on Ray Train (:func:`runs_in_process`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import ray
import torch

from sparse_rcnn.platform.engine.distributed import DistContext
from sparse_rcnn.platform.engine.local_reporter import CheckpointWriteError, LocalReporter
from sparse_rcnn.platform.engine.loop import RunRefused, run_training
from sparse_rcnn.platform.engine.train_step import NonFiniteLossError
from sparse_rcnn.platform.errors import InputError
from sparse_rcnn.platform.orchestration.tracking_guard import StopWhenTrackingLost
from sparse_rcnn.platform.orchestration.train import (
    JobFailed,
    JobInterrupted,
    JobOutcome,
    dataset_paths,
    log_final_checkpoint,
    match_threads_to_cpus,
    set_run_tags,
    this_node,
    worker_node_tags,
)
from sparse_rcnn.platform.redact import redact
from sparse_rcnn.platform.spec.job import JobSpec
from sparse_rcnn.platform.state_dir import state_dir
from sparse_rcnn.platform.tracking.outbox import OutboxLogger, TrackingUnavailable, outbox_folder
from sparse_rcnn.platform.tracking.runs import finish_run

KEEP_CHECKPOINTS = 2  # as Ray Train's CheckpointConfig(num_to_keep=2) in run_job
INTERRUPT_WAIT_S = 10.0  # Ctrl-C: how long pending tracking writes may still take


def runs_in_process(spec: JobSpec) -> bool:
    """Whether a study trial of ``spec`` runs in its Tune trial's process: one worker and a
    local storage path (the checkpoint folder is a plain directory)."""
    return spec.scaling.num_workers == 1 and "://" not in (spec.storage_path or "")


def checkpoint_folder(spec: JobSpec, name: str) -> Path:
    """``<storage_path>/<name>``: where the run ``name`` keeps its checkpoints."""
    return Path(spec.storage_path or state_dir() / "ray_results") / name


def release_memory() -> None:
    """Hand the memory of a finished run back to the system. A reused trial actor runs each
    trial in a new thread, and glibc keeps what a finished thread freed in its malloc arena:
    measured on Ray 2.60, the actor's RSS grew by about 0.3 GiB per tiny demo trial, with
    no Python object or tensor left alive; ``malloc_trim`` after a collection keeps it flat."""
    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc:
        trim = getattr(ctypes.CDLL(libc), "malloc_trim", None)  # glibc only
        if trim is not None:
            trim(0)


class _ForwardingReporter(LocalReporter):
    """A :class:`LocalReporter` that also hands every epoch's metrics to ``on_report`` and keeps
    the last checkpoint it wrote in memory (``last``)."""

    def __init__(self, folder: Path, on_report: Callable[[dict[str, float]], None] | None):
        super().__init__(folder, keep=KEEP_CHECKPOINTS)
        self.on_report = on_report
        self.last: dict[str, Any] | None = None

    def report(self, metrics: dict[str, float], checkpoint: dict[str, Any] | None) -> None:
        super().report(metrics, checkpoint)
        if checkpoint is not None:
            self.last = checkpoint
        if self.on_report is not None:
            self.on_report(dict(metrics))


def _close(logger: OutboxLogger, uri: str, run_id: str, status: str, error: str | None,
           wait_s: float | None = None) -> str | None:  # fmt: skip
    """Deliver the pending tracking writes, then mark the run ``status``. Returns None, or the
    reason the run could not be marked: its tracking server stays away (the writes are kept in
    the outbox; the run stays RUNNING until a resumed job delivers them and closes it)."""
    try:
        logger.close(wait_s)
    except TrackingUnavailable as e:
        return str(e)
    finish_run(uri, run_id, status, error)
    return None


def _fail(logger: OutboxLogger, uri: str, run_id: str, message: str, error: str,
          cause: BaseException | None = None) -> NoReturn:  # fmt: skip
    """Mark the run FAILED with ``error`` and raise :class:`JobFailed` with ``message``."""
    unmarked = _close(logger, uri, run_id, "FAILED", error)
    if unmarked is not None:
        message += f"; the run could not be marked FAILED: {unmarked}"
    raise JobFailed(message) from cause


def run_job_in_process(
    spec: JobSpec,
    run_id: str,
    uri: str,
    name: str,
    on_report: Callable[[dict[str, float]], None] | None = None,
) -> JobOutcome:
    """Train the one-worker ``spec`` here, logging into the existing MLflow run ``run_id`` (see
    the module doc). Raises :class:`JobFailed` after marking the run FAILED, and
    :class:`JobInterrupted` after marking it KILLED."""
    if not runs_in_process(spec):
        raise ValueError(f"job {spec.name} does not run in process (see runs_in_process)")
    paths = dataset_paths(spec)
    folder = checkpoint_folder(spec, name)
    reporter = _ForwardingReporter(folder, on_report)
    if ray.is_initialized():  # in a Tune trial's actor: its node is the one worker's
        set_run_tags(uri, run_id, worker_node_tags([this_node()]))  # before the outbox
    try:
        # A restart (here, or a study resumed after its driver died) replays from the last
        # checkpoint, possibly past an evaluation the run holds already: the outbox writes
        # each step once.
        logger = OutboxLogger(uri, run_id, outbox_folder(folder, run_id))
    except InputError as e:  # SPARSE_RCNN_TRACKING_OUTAGE_S
        finish_run(uri, run_id, "FAILED", str(e))
        raise JobFailed(f"training run {run_id} stopped: {e}") from None
    # Ray hands a GPU trial actor its device as CUDA_VISIBLE_DEVICES: cuda is that GPU.
    device = torch.device("cuda" if spec.scaling.use_gpu and torch.cuda.is_available() else "cpu")
    dist = DistContext(0, 1, device)
    failures = 0
    try:
        while True:
            match_threads_to_cpus()
            # A reused process keeps torch's global flag from the trial before; the engine
            # sets it again when this spec asks for it.
            torch.use_deterministic_algorithms(False)
            try:
                guarded = StopWhenTrackingLost(reporter, logger, dist)
                result = run_training(spec, paths, guarded, logger, dist, echo=on_report is None)
                break
            except TrackingUnavailable as e:  # the run cannot be closed without its server
                with contextlib.suppress(TrackingUnavailable):
                    logger.close(wait_s=0)  # stops the sender; the journal stays
                raise JobFailed(f"training run {run_id}: {e}; checkpoints in {folder}") from None
            # would fail the same way again
            except (NonFiniteLossError, RunRefused, CheckpointWriteError) as e:
                _fail(logger, uri, run_id, f"training run {run_id} stopped: {e}", str(e))
            except Exception as e:
                if spec.max_failures != -1 and failures >= spec.max_failures:
                    error = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
                    _fail(logger, uri, run_id, redact(f"training run {run_id} failed: {e}"),
                          error, cause=e)  # fmt: skip
                failures += 1
                print(f"training run {run_id}: {type(e).__name__}: {e}; restarting from the "
                      f"last checkpoint (restart {failures})", flush=True)  # fmt: skip
        try:
            logger.close()  # every kept write delivered before the run is closed
        except TrackingUnavailable as e:
            raise JobFailed(f"training run {run_id} trained to the end, but {e}; checkpoints "
                            f"in {folder}") from None  # fmt: skip
        latest = reporter.latest_path()
        if latest is not None:
            # The newest file is the one this attempt wrote last, still in memory (0.15 s not
            # spent reading back 150 MB for tiny); a run resumed after its last epoch reads it.
            state = reporter.last
            if state is None:
                state = torch.load(latest, map_location="cpu", weights_only=True)
            log_final_checkpoint(uri, run_id, state, spec)
            del state
    except (KeyboardInterrupt, SystemExit):
        unmarked = _close(logger, uri, run_id, "KILLED", "interrupted", wait_s=INTERRUPT_WAIT_S)
        if unmarked is not None:
            print(f"warning: run {run_id} not marked KILLED: {unmarked}", file=sys.stderr)
        latest = reporter.latest_path()
        raise JobInterrupted(run_id, str(latest) if latest else None) from None
    finally:
        reporter.last = None
        release_memory()  # the model, optimizer and data of this run are garbage now
    finish_run(uri, run_id, "FINISHED")
    return JobOutcome(run_id, uri, result.metrics, str(latest) if latest else None, str(folder))

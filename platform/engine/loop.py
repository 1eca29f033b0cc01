"""The training run of one job on one rank: build everything from the spec, resume from the
latest checkpoint, train epoch by epoch, evaluate, checkpoint.

Plain single-process code: distribution comes from outside (an initialised process group read
through :class:`DistContext`), checkpoint storage through a :class:`Reporter`, tracking through
a :class:`MetricsLogger` (rank 0 only).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from sparse_rcnn.models.criterion import SetCriterion, Target
from sparse_rcnn.models.detector import SparseRCNN
from sparse_rcnn.platform.checkpoints.native import load_backbone_weights, load_model
from sparse_rcnn.platform.data.augment import InputSizes
from sparse_rcnn.platform.data.coco import CocoDetection
from sparse_rcnn.platform.data.loader import Batch, build_train_loader
from sparse_rcnn.platform.data.prepare import DatasetPaths
from sparse_rcnn.platform.engine import faults
from sparse_rcnn.platform.engine.distributed import DistContext
from sparse_rcnn.platform.engine.eval_pictures import log_evaluation_pictures
from sparse_rcnn.platform.engine.evaluate import evaluate_dataset
from sparse_rcnn.platform.engine.schedule import lr_factor
from sparse_rcnn.platform.engine.train_step import StepResult, train_step
from sparse_rcnn.platform.errors import PlatformError
from sparse_rcnn.platform.evaluation.detections import Detections
from sparse_rcnn.platform.spec.job import JobSpec
from sparse_rcnn.platform.tracking import names

log = logging.getLogger(__name__)


class Reporter(Protocol):
    """Where checkpoints go and come back from (Ray Train, or a local folder)."""

    def latest_checkpoint(self) -> dict[str, Any] | None: ...

    def report(self, metrics: dict[str, float], checkpoint: dict[str, Any] | None) -> None:
        """Called on every rank at every epoch end; ``checkpoint`` only from rank 0."""


class MetricsLogger(Protocol):
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None: ...

    def log_detections(self, dets: Detections, epoch: int) -> None: ...


class NullLogger:
    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        pass

    def log_detections(self, dets: Detections, epoch: int) -> None:
        pass


class RunRefused(PlatformError):
    """The run cannot go on because of its input (an evaluation the spec makes impossible):
    raised on every rank at the same point, so a restart, which would fail the same way, is
    not attempted (``train_worker`` returns it as a status instead of raising)."""


@dataclass
class RunResult:
    epochs_done: int
    iterations: int
    metrics: dict[str, float]  # the last evaluation's box metrics (rank 0), "AP" etc.
    resumed_from_epoch: int | None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(spec: JobSpec) -> SparseRCNN:
    """The detector of ``spec`` initialised from the init seed (identical on every rank), then
    from ImageNet backbone weights or a detector checkpoint when the spec names them."""
    cfg = spec.model.resolve().replace(
        test_scale=InputSizes.scaled(spec.dataset.input_ratio).single
    )
    torch.manual_seed(spec.seeds.resolved()["init"])
    if spec.model.init_checkpoint:
        model, _ = load_model(spec.model.init_checkpoint, expect=cfg)
        return model
    model = SparseRCNN(cfg)
    if spec.model.backbone_weights:
        load_backbone_weights(model.backbone, spec.model.backbone_weights)
    return model


def build_datasets(spec: JobSpec, paths: DatasetPaths) -> tuple[CocoDetection, CocoDetection]:
    d = spec.dataset
    sizes = InputSizes.scaled(d.input_ratio)
    train = CocoDetection(
        paths.train_ann, paths.train_images, train=True, pipeline=d.pipeline, input_sizes=sizes,
        aug_seed=spec.seeds.resolved()["augmentation"], filter_empty_gt=d.filter_empty_gt,
        min_size=d.min_size, skip_bad_images=d.skip_bad_images,
    )  # fmt: skip
    val = CocoDetection(paths.val_ann, paths.val_images, train=False, input_sizes=sizes)
    return train, val


def _rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state()[1].tolist(),
        "python": random.getstate()[1],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = np.random.get_state()
    np.random.set_state((np_state[0], np.asarray(state["numpy"], dtype=np.uint32), *np_state[2:]))
    py = random.getstate()
    random.setstate((py[0], tuple(state["python"]), py[2]))


@dataclass
class _Run:
    """Everything one rank's run holds between its steps: built by :func:`_build`, moved on by
    the epoch loop of :func:`run_training`."""

    spec: JobSpec
    dist: DistContext
    logger: MetricsLogger
    model: SparseRCNN
    ddp: torch.nn.Module  # the model under DDP when distributed, else the model itself
    criterion: SetCriterion
    optimizer: torch.optim.Optimizer
    loader: Any
    val_ds: CocoDetection
    iteration: int = 0
    metrics: dict[str, float] = field(default_factory=dict)  # the last evaluation's, AP points
    last_step: StepResult | None = None  # read once per epoch, for the epoch line


def run_training(
    spec: JobSpec,
    paths: DatasetPaths,
    reporter: Reporter,
    logger: MetricsLogger | None = None,
    dist: DistContext | None = None,
    echo: bool = True,
) -> RunResult:
    """Train ``spec`` on this rank. Every rank calls this with the same arguments (the logger
    only matters on rank 0). Resumes from ``reporter.latest_checkpoint()`` when there is one:
    model, optimizer, iteration, epoch and RNG state continue where they stopped. ``echo``:
    rank 0 prints the epoch line (a study's trials leave that to the study's progress line)."""
    dist = dist or DistContext.current()
    run = _build(spec, paths, dist, logger if (logger is not None and dist.is_main) else None)
    start_epoch, resumed_from = _resume(run, reporter.latest_checkpoint())
    epochs = spec.schedule.epochs
    for epoch in range(start_epoch, epochs):
        _train_epoch(run, epoch)
        last = epoch == epochs - 1
        evaluated = bool(spec.eval_interval and (epoch + 1) % spec.eval_interval == 0) or last
        report: dict[str, float] = {"epoch": epoch, "iteration": run.iteration}
        if evaluated:
            _evaluate(run, epoch, last)
            report["eval_epoch"] = epoch + 1  # marks the reports that evaluated
        report.update(run.metrics)
        if dist.is_main and echo:
            loss = run.last_step.loss if run.last_step is not None else float("nan")
            print(epoch_line(epoch + 1, epochs, run.iteration, loss,
                             run.metrics if evaluated else None), flush=True)  # fmt: skip
        checkpoint = None
        if dist.is_main and ((epoch + 1) % spec.checkpoint_interval == 0 or last):
            checkpoint = _checkpoint(run, epoch)
        reporter.report(report, checkpoint)
    return RunResult(epochs - start_epoch, run.iteration, run.metrics, resumed_from)


def _build(
    spec: JobSpec, paths: DatasetPaths, dist: DistContext, logger: MetricsLogger | None
) -> _Run:
    """Seeds, model, data, loss and optimizer of a fresh run on this rank."""
    seeds = spec.seeds.resolved()
    if spec.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(seeds["init"])
    model = build_model(spec).to(dist.device)
    train_ds, val_ds = build_datasets(spec, paths)
    loader = build_train_loader(
        train_ds, spec.batch_size_per_worker, data_seed=seeds["data_order"], rank=dist.rank,
        world_size=dist.world_size, num_workers=spec.dataset.loader_workers,
        size_divisor=model.cfg.size_divisor, pin_memory=dist.device.type == "cuda",
    )  # fmt: skip
    opt = spec.optimizer
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=opt.lr, betas=opt.betas,
        eps=opt.eps, weight_decay=opt.weight_decay,
    )  # fmt: skip
    return _Run(spec, dist, logger or NullLogger(), model, model, SetCriterion(model.cfg),
                optimizer, loader, val_ds)  # fmt: skip


def _resume(run: _Run, ckpt: dict[str, Any] | None) -> tuple[int, int | None]:
    """Load ``ckpt`` (model, optimizer, iteration, RNG, last metrics) when there is one, wrap
    the model in DDP when distributed; ``(first epoch to train, epoch resumed after)``."""
    start_epoch, resumed_from = 0, None
    if ckpt is not None:
        run.model.load_state_dict(ckpt["model"])
        run.optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, run.iteration = int(ckpt["epoch"]) + 1, int(ckpt["iteration"])
        _set_rng_state(ckpt["rng"])
        resumed_from = int(ckpt["epoch"])
        run.metrics = dict(ckpt.get("metrics", {}))
        log.info("rank %d resumed after epoch %d (iteration %d)", run.dist.rank, resumed_from,
                 run.iteration)  # fmt: skip
    if run.dist.distributed:  # one device per process; on CUDA, DDP's buckets live on that device
        ids = [run.dist.device.index] if run.dist.device.type == "cuda" else None
        run.ddp = DistributedDataParallel(run.model, device_ids=ids)
    run.ddp.train()
    return start_epoch, resumed_from


def _train_epoch(run: _Run, epoch: int) -> None:
    """One pass over the loader: a training step per batch at the schedule's learning rate,
    the train metrics logged every ``log_interval`` steps."""
    spec, dist, sched, opt = run.spec, run.dist, run.spec.schedule, run.spec.optimizer
    run.loader.batch_sampler.set_epoch(epoch)
    window_start, window_images = time.perf_counter(), 0
    for batch in run.loader:
        faults.maybe_fail(epoch, run.iteration)
        lr = opt.lr * lr_factor(
            run.iteration, epoch, sched.lr_steps, sched.gamma, sched.warmup_iters,
            sched.warmup_ratio,
        )  # fmt: skip
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        images, image_sizes, targets = batch_to_device(batch, dist.device)
        run.last_step = train_step(
            run.ddp, run.criterion, run.optimizer, images, image_sizes, targets, dist,
            opt.clip_grad_norm, spec.precision, run.iteration,
        )  # fmt: skip
        run.iteration += 1
        window_images += len(batch.targets) * dist.world_size
        if run.iteration % spec.mlflow.log_interval == 0:
            # The logging step's values (not a mean over the interval), read in one transfer;
            # the steps between stay free of host syncs except the finite check.
            values = run.last_step.read()
            elapsed = time.perf_counter() - window_start  # after the read: work finished
            run.logger.log_metrics(
                train_metrics(values, lr, window_images / max(elapsed, 1e-9), epoch, dist.device),
                step=run.iteration,
            )
            window_start, window_images = time.perf_counter(), 0


def train_metrics(values: Any, lr: float, images_per_s: float, epoch: int,
                  device: torch.device) -> dict[str, float]:  # fmt: skip
    """One logging step's train metrics, named as ``tracking.names`` says (``train/loss``,
    ``train/<term>``, ``train/lr`` ...)."""
    t = names.TRAIN_PREFIX
    return {
        names.TRAIN_LOSS: values.loss,
        **{t + k: v for k, v in values.terms.items()},
        names.TRAIN_LR: lr,
        names.TRAIN_GRAD_NORM: values.grad_norm,
        names.TRAIN_IMAGES_PER_S: images_per_s,
        names.TRAIN_EPOCH: epoch,
        **_memory_metrics(device),
    }


def _evaluate(run: _Run, epoch: int, last: bool) -> None:
    """Rank 0 evaluates (the others only predict), logs the metrics and pictures (and the last
    epoch's detections) and shares the metrics with every rank; input that makes evaluation
    impossible raises :class:`RunRefused` on every rank."""
    refused: str | None = None
    try:
        out = evaluate_dataset(run.model, run.val_ds, run.dist, run.spec.precision,
                               max_dets=run.spec.eval_max_dets)  # fmt: skip
    except PlatformError as e:  # input the user must fix; every rank learns of it below
        out, refused = None, f"evaluation after epoch {epoch + 1}: {e}"
    metrics = run.metrics
    if out is not None:
        result_eval, dets = out
        metrics = result_eval.points()  # AP points, undefined metrics left out
        run.logger.log_epoch(epoch + 1, metrics)
        log_evaluation_pictures(run.logger, run.val_ds, result_eval, dets, epoch + 1, last)
        if last:
            run.logger.log_detections(dets, epoch + 1)
    refused, run.metrics = run.dist.broadcast((refused, metrics))
    if refused is not None:
        raise RunRefused(refused)


def _checkpoint(run: _Run, epoch: int) -> dict[str, Any]:
    """What rank 0 saves after ``epoch``: enough to resume exactly (RNG included)."""
    return {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "epoch": epoch,
        "iteration": run.iteration,
        "rng": _rng_state(),
        "metrics": run.metrics,
        "model_config": run.model.cfg.to_dict(),
    }


def batch_to_device(batch: Batch, device: torch.device) -> tuple[Tensor, Tensor, list[Target]]:
    """``(images (B, 3, H, W), image_sizes (B, 2), targets)`` of ``batch`` on ``device``. The
    copies are queued, not waited for: a blocking copy to the GPU first waits for all its
    queued work (a host sync); a non-blocking one from the loader's pinned batches (on CUDA)
    is only queued on the stream."""

    def to(t: Tensor) -> Tensor:
        return t.to(device, non_blocking=True)

    targets = [Target(to(t["boxes"]), to(t["labels"])) for t in batch.targets]
    return to(batch.images), to(batch.image_sizes), targets


def epoch_line(
    epoch: int, epochs: int, iteration: int, loss: float, evaluation: dict[str, float] | None
) -> str:
    """The progress line rank 0 prints after each epoch (1-based). AP (points) only when this
    epoch evaluated: an epoch without an evaluation must not repeat the previous one's AP."""
    line = f"epoch {epoch}/{epochs}: iteration {iteration}, last loss {loss:.3f}"
    if evaluation:
        ap = " ".join(f"{k} {evaluation[k]:.2f}" for k in ("AP", "AP50") if k in evaluation)
        line += f", val {ap}" if ap else ", val AP n/a"
    return line


def _memory_metrics(device: torch.device) -> dict[str, float]:
    if device.type == "cuda":
        return {names.TRAIN_MEMORY_GB: torch.cuda.max_memory_allocated(device) / 2**30}
    try:
        import resource

        return {names.TRAIN_MAX_RSS_GB: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    except ImportError:  # not on POSIX
        return {}

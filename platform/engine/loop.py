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
from dataclasses import dataclass
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


def run_training(
    spec: JobSpec,
    paths: DatasetPaths,
    reporter: Reporter,
    logger: MetricsLogger | None = None,
    dist: DistContext | None = None,
) -> RunResult:
    """Train ``spec`` on this rank. Every rank calls this with the same arguments (the logger
    only matters on rank 0). Resumes from ``reporter.latest_checkpoint()`` when there is one:
    model, optimizer, iteration, epoch and RNG state continue where they stopped."""
    dist = dist or DistContext.current()
    logger = logger if (logger is not None and dist.is_main) else NullLogger()
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
    criterion = SetCriterion(model.cfg)
    opt_spec = spec.optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=opt_spec.lr, betas=opt_spec.betas, eps=opt_spec.eps,
        weight_decay=opt_spec.weight_decay,
    )  # fmt: skip

    start_epoch, iteration, resumed_from = 0, 0, None
    ckpt = reporter.latest_checkpoint()
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, iteration = int(ckpt["epoch"]) + 1, int(ckpt["iteration"])
        _set_rng_state(ckpt["rng"])
        resumed_from = int(ckpt["epoch"])
        log.info(
            "rank %d resumed after epoch %d (iteration %d)", dist.rank, resumed_from, iteration
        )
    ddp = model
    if dist.distributed:  # one device per process; on CUDA, DDP's buckets live on that device
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        ddp = DistributedDataParallel(model, device_ids=ids)
    ddp.train()

    sched = spec.schedule
    metrics: dict[str, float] = dict(ckpt.get("metrics", {})) if ckpt else {}
    last_step: StepResult | None = None  # read once per epoch, for the epoch line
    for epoch in range(start_epoch, sched.epochs):
        loader.batch_sampler.set_epoch(epoch)
        window_start, window_images = time.perf_counter(), 0
        for batch in loader:
            faults.maybe_fail(epoch, iteration)
            lr = opt_spec.lr * lr_factor(
                iteration, epoch, sched.lr_steps, sched.gamma, sched.warmup_iters,
                sched.warmup_ratio,
            )  # fmt: skip
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, image_sizes, targets = batch_to_device(batch, dist.device)
            last_step = train_step(
                ddp, criterion, optimizer, images, image_sizes, targets, dist,
                opt_spec.clip_grad_norm, spec.precision, iteration,
            )  # fmt: skip
            iteration += 1
            window_images += len(batch.targets) * dist.world_size
            if iteration % spec.mlflow.log_interval == 0:
                # The logging step's values (not a mean over the interval), read in one
                # transfer; the steps between stay free of host syncs except the finite check.
                values = last_step.read()
                elapsed = time.perf_counter() - window_start  # after the read: work finished
                logger.log_metrics(
                    {
                        "train/loss": values.loss,
                        **{f"train/{k}": v for k, v in values.terms.items()},
                        "train/lr": lr,
                        "train/grad_norm": values.grad_norm,
                        "train/images_per_s": window_images / max(elapsed, 1e-9),
                        "train/epoch": epoch,
                        **_memory_metrics(dist.device),
                    },
                    step=iteration,
                )
                window_start, window_images = time.perf_counter(), 0

        epoch_metrics: dict[str, float] = {"epoch": epoch, "iteration": iteration}
        last = epoch == sched.epochs - 1
        evaluated = bool(spec.eval_interval and (epoch + 1) % spec.eval_interval == 0) or last
        if evaluated:
            refused: str | None = None
            try:  # rank 0 evaluates; the others only predict
                out = evaluate_dataset(
                    model, val_ds, dist, spec.precision, max_dets=spec.eval_max_dets
                )
            except PlatformError as e:  # input the user must fix; every rank learns of it below
                out, refused = None, f"evaluation after epoch {epoch + 1}: {e}"
            if out is not None:
                result_eval, dets = out
                metrics = result_eval.points()  # AP points, undefined metrics left out
                logger.log_epoch(epoch + 1, metrics)
                log_evaluation_pictures(logger, val_ds, result_eval, dets, epoch + 1, last)
                if last:
                    logger.log_detections(dets, epoch + 1)
            refused, metrics = dist.broadcast((refused, metrics))
            if refused is not None:
                raise RunRefused(refused)
            epoch_metrics["eval_epoch"] = epoch + 1  # marks the reports that evaluated
        epoch_metrics.update(metrics)
        if dist.is_main:
            last_loss = last_step.loss if last_step is not None else float("nan")
            print(epoch_line(epoch + 1, sched.epochs, iteration, last_loss,
                             metrics if evaluated else None), flush=True)  # fmt: skip
        checkpoint = None
        if dist.is_main and ((epoch + 1) % spec.checkpoint_interval == 0 or last):
            checkpoint = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "iteration": iteration,
                "rng": _rng_state(),
                "metrics": metrics,
                "model_config": model.cfg.to_dict(),
            }
        reporter.report(epoch_metrics, checkpoint)
    return RunResult(sched.epochs - start_epoch, iteration, metrics, resumed_from)


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
        return {"train/memory_gb": torch.cuda.max_memory_allocated(device) / 2**30}
    try:
        import resource

        return {"train/max_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    except ImportError:  # not on POSIX
        return {}

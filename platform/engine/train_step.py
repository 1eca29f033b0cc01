"""One optimisation step, top to bottom: forward -> loss dict -> weighted sum -> finite check ->
backward -> clip -> step. Used by the epoch loop and tested on its own."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sparse_rcnn.models.criterion import SetCriterion, Target, total_loss
from sparse_rcnn.models.matcher import NonFiniteCostError
from sparse_rcnn.platform.engine.distributed import DistContext


class NonFiniteLossError(FloatingPointError):
    """Training diverged: a loss term (or the matching cost) is NaN or Inf."""


@dataclass
class StepResult:
    loss: float
    terms: dict[str, float]  # every loss term and pos_acc, this rank's values
    grad_norm: float
    num_boxes: float  # the all-reduced mean GT count that normalised the losses


def autocast_for(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(
    model: nn.Module,
    criterion: SetCriterion,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    image_sizes: Tensor,
    targets: list[Target],
    dist: DistContext,
    clip_grad_norm: float | None = 1.0,
    precision: str = "fp32",
    step: int = 0,
) -> StepResult:
    """Run one step on this rank's batch. ``model`` may be DDP-wrapped; ``num_boxes`` is the
    GT count averaged over ranks, so DDP's gradient averaging reproduces the single-process loss
    of the global batch. A non-finite loss on any rank stops every rank with
    :class:`NonFiniteLossError` before ``backward`` (parameters stay untouched)."""
    num_boxes = dist.mean(sum(len(t.labels) for t in targets))
    error: str | None = None
    try:
        with autocast_for(images.device, precision):
            outputs = model(images, image_sizes)
        losses = criterion(outputs, targets, num_boxes)
        loss = total_loss(losses)
        if not torch.isfinite(loss):
            bad = {k: float(v) for k, v in losses.items() if not math.isfinite(float(v))}
            error = f"non-finite loss at step {step}: total={float(loss)}; terms {bad}"
    except NonFiniteCostError as e:
        error = f"non-finite predictions at step {step}: {e}"
    if dist.any(error is not None):
        raise NonFiniteLossError(error or f"non-finite loss on another rank at step {step}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    if clip_grad_norm is not None:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
    else:
        grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
    optimizer.step()
    return StepResult(
        loss=float(loss.detach()),
        terms={k: float(v.detach()) for k, v in losses.items()},
        grad_norm=float(grad_norm),
        num_boxes=num_boxes,
    )

"""One optimisation step, top to bottom: forward -> loss dict -> weighted sum -> finite check ->
backward -> clip -> step. Used by the epoch loop and tested on its own.

Host synchronisation: on a GPU every read of a device value (``.item()``, ``float()``, ``if
tensor``) waits until the GPU has finished all queued work. A step reads one value, the finite
check; the loss terms and the grad norm stay on the device in :class:`StepResult` and are read
together (:meth:`StepResult.read`, one transfer) only when the loop logs them. The Hungarian
matching reads its cost matrix once per stage and image: scipy solves it on the CPU.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sparse_rcnn.models.criterion import SetCriterion, Target, total_loss
from sparse_rcnn.models.detector import DetectorOutput, StageOutput
from sparse_rcnn.models.matcher import NonFiniteCostError
from sparse_rcnn.platform.engine.distributed import DistContext


class NonFiniteLossError(FloatingPointError):
    """Training diverged: a loss term (or the matching cost) is NaN or Inf."""


@dataclass(frozen=True)
class StepValues:
    """A step's numbers on the host."""

    loss: float
    terms: dict[str, float]  # every loss term and pos_acc, this rank's values
    grad_norm: float


@dataclass(frozen=True)
class StepResult:
    """A step's outcome; the tensors are 0-d, detached and on the training device, so keeping
    one costs no synchronisation. ``loss``, ``terms`` and ``grad_norm`` read them (a host sync
    each time); :meth:`read` reads all of them in one transfer."""

    loss_tensor: Tensor
    term_tensors: dict[str, Tensor]
    grad_norm_tensor: Tensor
    num_boxes: float  # the all-reduced mean GT count that normalised the losses

    def read(self) -> StepValues:
        names = list(self.term_tensors)
        stacked = torch.stack(
            [self.loss_tensor.float(), self.grad_norm_tensor.float()]
            + [self.term_tensors[k].float() for k in names]
        )  # (2 + T,)
        loss, grad_norm, *terms = stacked.tolist()  # the one transfer
        return StepValues(loss, dict(zip(names, terms, strict=True)), grad_norm)

    @property
    def loss(self) -> float:
        return self.read().loss

    @property
    def terms(self) -> dict[str, float]:
        return self.read().terms

    @property
    def grad_norm(self) -> float:
        return self.read().grad_norm


def autocast_for(device: torch.device, precision: str):
    """The forward's autocast context for the spec's ``precision`` ("fp32": none)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _float32(outputs: DetectorOutput) -> DetectorOutput:
    """The detector's outputs in float32: under bf16 autocast the heads return bf16 logits and
    boxes, and the focal, L1 and GIoU sums are taken in float32 (as AMP training keeps losses)."""
    stages = [StageOutput(s.logits.float(), s.boxes.float()) for s in outputs.stages]
    return DetectorOutput(stages, outputs.whwh.float())


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
        losses = criterion(_float32(outputs), targets, num_boxes)
        loss = total_loss(losses)
        not_finite: Tensor | bool = ~torch.isfinite(loss)  # stays on the device
    except NonFiniteCostError as e:
        error, not_finite = f"non-finite predictions at step {step}: {e}", True
    if dist.any(not_finite):  # the step's one host sync
        if error is None and not bool(torch.isfinite(loss)):
            bad = {k: float(v) for k, v in losses.items() if not math.isfinite(float(v))}
            error = f"non-finite loss at step {step}: total={float(loss)}; terms {bad}"
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
        loss_tensor=loss.detach(),
        term_tensors={k: v.detach() for k, v in losses.items()},
        grad_norm_tensor=grad_norm.detach(),
        num_boxes=num_boxes,
    )

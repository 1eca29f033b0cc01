"""The few collective operations the engine needs, as no-ops in a single process.

Works with whatever process group is initialised (Ray Train's, torchrun's, a test's); the
engine never creates one itself.

Where a collective's tensors live depends on the group's backends: gloo takes CPU tensors, NCCL
only CUDA tensors on the rank's current device. A group with a CPU backend (``gloo``, or
``cpu:gloo,cuda:nccl``, which orchestration asks Ray Train for on GPUs) gets the scalar and
object collectives below on the CPU, so they never wait for the GPU's queue; DDP's gradient
all-reduce of CUDA tensors still goes over NCCL. A group without one (plain ``nccl``) gets them
on the rank's CUDA device, which :meth:`DistContext.current` makes the current device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


def collective_device(backend_config: str, device: torch.device) -> torch.device:
    """The device of the tensors a collective sends over a group configured as
    ``backend_config`` (``dist.get_backend_config()``: ``"cpu:gloo,cuda:gloo"`` for gloo,
    ``"cuda:nccl"`` for NCCL, ``"cpu:gloo,cuda:nccl"``): the CPU when the group has a CPU
    backend, else the rank's ``device``. torch's object collectives choose the same way."""
    devices = {pair.split(":", 1)[0].strip() for pair in backend_config.lower().split(",")}
    return torch.device("cpu") if "cpu" in devices or not backend_config else device


def rank_device(device: torch.device | str) -> torch.device:
    """``device`` with an index: a bare ``"cuda"`` becomes ``cuda:$LOCAL_RANK`` (torchrun and
    Ray Train set it), the usual one-GPU-per-process layout."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str = ""  # dist.get_backend_config() of the group; "" without one

    @classmethod
    def current(cls, device: torch.device | str = "cpu") -> DistContext:
        """This rank's context over the initialised default group (or a single process). A CUDA
        ``device`` becomes the current device: NCCL's object collectives and its communicators
        use the current device, which is GPU 0 in every process unless set."""
        device = rank_device(device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), device, dist.get_backend_config())
        return cls(0, 1, device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def collective_device(self) -> torch.device:
        """Where :meth:`mean` and :meth:`any` put their tensors (see :func:`collective_device`)."""
        return collective_device(self.backend, self.device)

    def mean(self, value: float) -> float:
        """The mean of ``value`` over ranks (mmdetection's reduce_mean)."""
        if not self.distributed:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.collective_device)
        dist.all_reduce(t)
        return t.item() / self.world_size

    def any(self, flag: bool | Tensor) -> bool:
        """True on every rank when ``flag`` is true on any rank. A tensor ``flag`` (a 0-d bool
        on ``device``, e.g. "this step's loss is not finite") costs one device-to-host read: on
        a CPU-backend group it is read before the all-reduce, on NCCL alone after it."""
        if isinstance(flag, Tensor) and (
            not self.distributed or flag.device != self.collective_device
        ):
            flag = bool(flag.item())  # the one read
        if not self.distributed:
            return bool(flag)
        if isinstance(flag, Tensor):
            t = flag.reshape(1).to(torch.int64)
        else:
            t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=self.collective_device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0 (in rank order); None elsewhere."""
        if not self.distributed:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

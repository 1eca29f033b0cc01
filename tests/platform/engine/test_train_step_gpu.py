"""The train step on CUDA: fp32 and bf16 on one GPU, its host synchronisations counted by
CUDA's sync debug mode, and 2-rank DDP over NCCL (alone and with gloo for CPU tensors) when two
GPUs exist. Skipped without CUDA (``bench/gpu_check.sh`` runs them on a lent GPU machine)."""

from __future__ import annotations

import collections
import math
import os
import socket
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sparse_rcnn.models.config import PRESETS
from sparse_rcnn.models.criterion import SetCriterion, Target
from sparse_rcnn.models.detector import SparseRCNN
from sparse_rcnn.platform.engine.distributed import DistContext
from sparse_rcnn.platform.engine.train_step import train_step

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available())"
    ),
]

REPO = Path(__file__).resolve().parents[3]
CFG = PRESETS["tiny"].replace(num_proposals=6, num_stages=2, norm_eval=True, frozen_stages=1)


def batch(n: int, device: torch.device | str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 96, 128, generator=g)
    targets = []
    for i in range(n):
        m = 1 + i % 2  # every image has boxes: the matcher runs for each
        xy = torch.rand(m, 2, generator=g) * 60
        boxes = torch.cat([xy, xy + 20 + torch.rand(m, 2, generator=g) * 30], 1)
        targets.append(Target(boxes.to(device), torch.randint(0, 80, (m,), generator=g).to(device)))
    return images.to(device), torch.tensor([[96, 128]] * n, device=device), targets


def _model(device) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = SparseRCNN(CFG).to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    return model, opt


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_cuda_step_trains_in_each_precision(precision):
    ctx = DistContext.current("cuda")
    assert ctx.device.type == "cuda" and torch.cuda.current_device() == ctx.device.index
    model, opt = _model(ctx.device)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    images, sizes, targets = batch(2, ctx.device)
    for step in range(3):
        out = train_step(model, SetCriterion(CFG), opt, images, sizes, targets, ctx, 1.0,
                         precision, step)  # fmt: skip
    assert out.loss_tensor.device.type == "cuda"
    assert {t.dtype for t in out.term_tensors.values()} == {torch.float32}
    values = out.read()
    assert math.isfinite(values.loss) and values.grad_norm > 0
    moved = max((p.detach() - before[n]).abs().max().item()
                for n, p in model.named_parameters() if p.requires_grad)  # fmt: skip
    assert moved > 0


def test_host_syncs_of_a_cuda_step(capsys):
    """CUDA's sync debug mode warns at every synchronising call; the warning's location is the
    Python line that made it. The platform's code synchronises once per step (the finite check
    in DistContext.any). The model's own are printed, not bounded: per stage and image the
    Hungarian matching's cost matrix out and its indices back, per stage and FPN level a
    ``nonzero`` in the RoI level assignment. Inputs are on the GPU already, as the loop puts
    them there (``batch_to_device``, tested in test_loop_gpu.py)."""
    ctx = DistContext.current("cuda")
    model, opt = _model(ctx.device)
    images, sizes, targets = batch(2, ctx.device)
    crit = SetCriterion(CFG)
    train_step(model, crit, opt, images, sizes, targets, ctx, 1.0, "bf16", 0)  # warm-up
    torch.cuda.synchronize()
    per_step: list[collections.Counter] = []
    torch.cuda.set_sync_debug_mode("warn")
    try:
        for step in range(1, 4):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                train_step(model, crit, opt, images, sizes, targets, ctx, 1.0, "bf16", step)
            per_step.append(collections.Counter(
                f"{os.path.relpath(os.path.realpath(w.filename), REPO)}:{w.lineno}" for w in caught
                if "synchroniz" in str(w.message)
            ))  # fmt: skip
    finally:
        torch.cuda.set_sync_debug_mode("default")
    with capsys.disabled():
        for i, c in enumerate(per_step, 1):
            print(f"\nsyncs in step {i}: {sum(c.values())}: {dict(c)}")
    for c in per_step:
        ours = {k: v for k, v in c.items() if k.startswith("platform")}
        assert sum(ours.values()) == 1, ours
        assert next(iter(ours)).startswith("platform/engine/distributed.py"), ours


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _exact_math() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def _nccl_worker(rank: int, port: int, backend: str, steps: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank))
    dist.init_process_group(backend, rank=rank, world_size=2)
    _exact_math()
    ctx = DistContext.current("cuda")
    assert ctx.device == torch.device("cuda", rank)
    model, _ = _model(ctx.device)
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank])
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-2,
                          momentum=0.9)  # fmt: skip
    for step in range(steps):
        images, sizes, targets = batch(4, ctx.device, seed=step)
        mine = slice(2 * rank, 2 * rank + 2)
        train_step(ddp, SetCriterion(CFG), opt, images[mine], sizes[mine], targets[mine], ctx,
                   1.0, "fp32", step)  # fmt: skip
    checks = {
        "collective_device": str(ctx.collective_device),
        "mean": ctx.mean(rank + 1),
        "any": ctx.any(rank == 1),
        "any_tensor": ctx.any(torch.tensor(rank == 0, device=ctx.device)),
        "gather": ctx.gather(rank),
        "broadcast": ctx.broadcast(f"from {rank}"),
    }
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    torch.save({"checks": checks, "state": state}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.skipif(
    torch.cuda.device_count() < 2,
    reason=f"needs two CUDA devices, found {torch.cuda.device_count()}",
)
@pytest.mark.parametrize("backend", ["nccl", "cpu:gloo,cuda:nccl"])
def test_two_nccl_ranks_equal_one_gpu_with_the_global_batch(backend, tmp_path):
    steps = 3
    mp.spawn(_nccl_worker, args=(_free_port(), backend, steps, str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    expected_device = "cuda:0" if backend == "nccl" else "cpu"
    assert r0["checks"]["collective_device"] == expected_device
    for r in (r0, r1):
        assert r["checks"]["mean"] == 1.5 and r["checks"]["any"] is True
        assert r["checks"]["any_tensor"] is True and r["checks"]["broadcast"] == "from 0"
    assert r0["checks"]["gather"] == [0, 1] and r1["checks"]["gather"] is None
    for k in r0["state"]:  # DDP keeps the replicas identical
        torch.testing.assert_close(r0["state"][k], r1["state"][k], rtol=0, atol=0)

    _exact_math()
    model, _ = _model("cuda:0")
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-2,
                          momentum=0.9)  # fmt: skip
    for step in range(steps):
        images, sizes, targets = batch(4, "cuda:0", seed=step)
        train_step(model, SetCriterion(CFG), opt, images, sizes, targets, DistContext(
            device=torch.device("cuda:0")), 1.0, "fp32", step)  # fmt: skip
    single = {k: v.cpu() for k, v in model.state_dict().items()}
    # Not bitwise: roi_align's backward adds with atomics on CUDA, in no fixed order.
    worst = max((r0["state"][k].float() - single[k].float()).abs().max().item() for k in single)
    assert worst < 1e-4, worst

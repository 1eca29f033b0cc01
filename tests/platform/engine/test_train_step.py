from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sparse_rcnn.models.config import PRESETS
from sparse_rcnn.models.criterion import SetCriterion, Target, total_loss
from sparse_rcnn.models.detector import SparseRCNN
from sparse_rcnn.platform.engine.distributed import DistContext
from sparse_rcnn.platform.engine.train_step import train_step

# BatchNorm statistics frozen (the reference setting), so a batch split across workers sees
# exactly the same normalisation as the whole batch.
CFG = PRESETS["tiny"].replace(num_proposals=6, num_stages=2, norm_eval=True, frozen_stages=1)


def batch(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 96, 128, generator=g)
    sizes = torch.tensor([[96, 128]] * n)
    targets = []
    for i in range(n):
        m = i % 3  # 0, 1 or 2 boxes: an image without ground truth included
        xy = torch.rand(m, 2, generator=g) * 60
        targets.append(Target(torch.cat([xy, xy + 20 + torch.rand(m, 2, generator=g) * 30], 1),
                              torch.randint(0, 80, (m,), generator=g)))  # fmt: skip
    return images, sizes, targets


def test_one_step_matches_hand_computed_adamw():
    torch.manual_seed(0)
    model = SparseRCNN(CFG).train()
    ref = SparseRCNN(CFG).train()
    ref.load_state_dict(model.state_dict())
    images, sizes, targets = batch(3)
    lr, wd, clip = 1e-3, 1e-4, 0.5
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd, eps=1e-8)
    out = train_step(model, SetCriterion(CFG), opt, images, sizes, targets, DistContext(), clip)

    # By hand: loss normalised by the 3 boxes, gradient clipped to global norm 0.5, then the
    # first AdamW step: p <- p (1 - lr wd) - lr g / (|g| + eps) (bias-corrected moments).
    loss = total_loss(SetCriterion(CFG)(ref(images, sizes), targets, 3.0))
    loss.backward()
    assert out.loss == pytest.approx(loss.item(), rel=1e-6) and out.num_boxes == 3.0
    grads = {n: p.grad for n, p in ref.named_parameters() if p.grad is not None}
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values()))
    assert out.grad_norm == pytest.approx(norm.item(), rel=1e-4)  # float32 sum order
    scale = min(1.0, clip / (norm.item() + 1e-6))
    trained = dict(model.named_parameters())
    for name, p in ref.named_parameters():
        if not p.requires_grad:
            torch.testing.assert_close(trained[name], p)  # frozen stem untouched
            continue
        g = grads[name] * scale if name in grads else torch.zeros_like(p)
        expected = p.detach() * (1 - lr * wd) - lr * g / (g.abs() + 1e-8)
        torch.testing.assert_close(trained[name].detach(), expected, rtol=1e-5, atol=2e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    # SGD, not AdamW: Adam divides each gradient by its own magnitude, so float32 rounding in
    # near-zero gradients (which DDP's reduction order changes) becomes a full lr-sized step and
    # hides what this test checks, that DDP reproduces the global batch's gradient.
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-2,
                           momentum=0.9)  # fmt: skip


def _ddp_worker(rank: int, port: int, steps: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = SparseRCNN(CFG).train()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = _optimizer(model)
    ctx = DistContext.current()
    for step in range(steps):
        images, sizes, targets = batch(4, seed=step)
        mine = slice(2 * rank, 2 * rank + 2)
        train_step(ddp, SetCriterion(CFG), opt, images[mine], sizes[mine], targets[mine], ctx, 1.0)
    if rank == 0:
        torch.save(model.state_dict(), os.path.join(out_dir, "ddp.pt"))
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_worker_ddp_equals_one_worker_with_the_global_batch(tmp_path):
    steps = 3
    mp.spawn(_ddp_worker, args=(_free_port(), steps, str(tmp_path)), nprocs=2, join=True)
    torch.manual_seed(0)
    model = SparseRCNN(CFG).train()
    opt = _optimizer(model)
    for step in range(steps):
        images, sizes, targets = batch(4, seed=step)
        train_step(model, SetCriterion(CFG), opt, images, sizes, targets, DistContext(), 1.0)
    ddp_state = torch.load(tmp_path / "ddp.pt", weights_only=True)
    single = model.state_dict()
    diffs = {k: (ddp_state[k].float() - single[k].float()).abs().max().item() for k in single}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] < 1e-5, (worst, diffs[worst])
    moved = max((ddp_state[k].float() - SparseRCNN(CFG).state_dict()[k].float()).abs().max()
                for k in single if k.endswith("fc_cls.weight"))  # fmt: skip
    assert moved > 1e-4  # the parameters did train


def test_bf16_autocast_keeps_the_losses_in_float32():
    """``precision: bf16`` runs the forward under autocast; the criterion gets float32 outputs,
    so every loss term (and the grad norm) is float32. On CPU here; the GPU tests run it on
    CUDA."""
    torch.manual_seed(0)
    model = SparseRCNN(CFG).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    images, sizes, targets = batch(2)
    out = train_step(model, SetCriterion(CFG), opt, images, sizes, targets, DistContext(), 1.0,
                     precision="bf16")  # fmt: skip
    assert out.loss_tensor.dtype == torch.float32
    assert {t.dtype for t in out.term_tensors.values()} == {torch.float32}
    assert math.isfinite(out.loss) and out.grad_norm > 0

"""The loop's batch on its way to the GPU: pinned by the loader, copied without a host sync.
Skipped without CUDA (``bench/gpu_check.sh`` runs it on a lent GPU machine)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

pytest.importorskip("pydantic", reason="the engine's loop needs pydantic (job specs)")

from sparse_rcnn.platform.data.loader import Batch  # noqa: E402
from sparse_rcnn.platform.engine.loop import batch_to_device  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available())"
    ),
]


def _collate(_samples) -> Batch:
    g = torch.Generator().manual_seed(0)
    targets = [{"boxes": torch.rand(m, 4, generator=g) * 50, "labels": torch.arange(m)}
               for m in (3, 0)]  # fmt: skip
    return Batch(torch.randn(2, 3, 64, 96, generator=g), torch.tensor([[64, 96], [60, 90]]),
                 targets, [None, None])  # fmt: skip


def test_a_pinned_batch_reaches_the_gpu_without_a_host_sync():
    # The loop's loader on CUDA: pin_memory=True pins the Batch namedtuple's tensors.
    (batch,) = DataLoader([0], batch_size=1, collate_fn=_collate, pin_memory=True)
    assert batch.images.is_pinned() and batch.image_sizes.is_pinned()
    # An image without boxes has empty tensors: no bytes, so nothing to pin (torch leaves them
    # unpinned) and nothing to copy. Every tensor with data is pinned.
    state = [
        (k, t[k].numel(), t[k].is_pinned()) for t in batch.targets for k in ("boxes", "labels")
    ]
    assert all(pinned for _, n, pinned in state if n), state
    assert any(n == 0 for _, n, _ in state)  # the empty case is in the batch
    device = torch.device("cuda", torch.cuda.current_device())
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # a synchronising call raises
    try:
        images, sizes, targets = batch_to_device(batch, device)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert images.device == sizes.device == device
    assert torch.equal(images.cpu(), batch.images) and torch.equal(sizes.cpu(), batch.image_sizes)
    for got, want in zip(targets, batch.targets, strict=True):
        assert torch.equal(got.boxes.cpu(), want["boxes"])
        assert torch.equal(got.labels.cpu(), want["labels"])

"""Model speed: training step (forward + loss + backward + AdamW step) and inference, images/s.

    .venv/bin/python -m bench.model_step [--presets tiny r50_fpn_1x] [--device cpu|cuda]

Inputs are random 800x1333 images (the reference test size) with 8 random boxes each; the
tiny preset is also timed at its own input size. On CUDA each preset is timed in fp32, bf16
autocast, channels_last and torch.compile variants. Prints a table of medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from sparse_rcnn.models.config import preset
from sparse_rcnn.models.criterion import SetCriterion, Target, total_loss
from sparse_rcnn.models.detector import SparseRCNN
from sparse_rcnn.models.postprocess import PostProcess


def make_batch(n: int, h: int, w: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, h, w, generator=g)
    xy = torch.rand(n, 8, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
    wh = torch.rand(n, 8, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3]) + 8
    boxes = torch.cat([xy, xy + wh], -1)
    targets = [
        Target(boxes[i].to(device), torch.randint(0, 80, (8,), generator=g).to(device))
        for i in range(n)
    ]
    return images.to(device), torch.tensor([[h, w]] * n, device=device), targets


def timeit(fn: Callable[[], None], device: str, warmup: int, iters: int) -> float:
    """Median seconds of ``fn`` after ``warmup`` calls."""
    times = []
    for i in range(warmup + iters):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_one(name, size, device, variant, batch, warmup, iters) -> dict:
    torch.manual_seed(0)
    cfg = preset(name)
    model = SparseRCNN(cfg).to(device)
    if variant in ("channels_last", "compile"):
        model = model.to(memory_format=torch.channels_last)
    fwd = torch.compile(model) if variant == "compile" else model
    autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=variant == "bf16")
    criterion, post = SetCriterion(cfg), PostProcess(cfg.detections_per_image)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2.5e-5)
    images, sizes, targets = make_batch(batch, *size, device)
    if variant in ("channels_last", "compile"):
        images = images.contiguous(memory_format=torch.channels_last)

    def train_step():
        model.train()
        with autocast:
            out = fwd(images, sizes)
            loss = total_loss(criterion(out, targets, float(8 * batch)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    @torch.no_grad()
    def infer():
        model.eval()
        with autocast:
            post(fwd(images[:1], sizes[:1]))

    train_s = timeit(train_step, device, warmup, iters)
    infer_s = timeit(infer, device, warmup, iters)
    return {
        "preset": name,
        "input": f"{size[0]}x{size[1]}",
        "variant": variant,
        "train img/s": batch / train_s,
        "infer img/s": 1 / infer_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "r50_fpn_1x"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=2, help="training images per step")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    args = parser.parse_args()
    variants = ["fp32"]
    if args.device.startswith("cuda"):
        variants += ["bf16", "channels_last", "compile"]
        print(f"device: {torch.cuda.get_device_name()}")
    else:
        print(f"device: cpu, {torch.get_num_threads()} threads")
    rows = []
    for name in args.presets:
        sizes = [(800, 1333)]
        if name == "tiny":
            sizes.append((320, 533))
        for size in sizes:
            for variant in variants:
                rows.append(
                    bench_one(name, size, args.device, variant, args.batch, args.warmup, args.iters)
                )
                r = rows[-1]
                print(
                    f"{r['preset']:>12} {r['input']:>9} {r['variant']:>13}  "
                    f"train {r['train img/s']:8.3f} img/s  infer {r['infer img/s']:8.3f} img/s",
                    flush=True,
                )


if __name__ == "__main__":
    main()

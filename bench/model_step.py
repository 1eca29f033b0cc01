"""Model speed: the engine's training step (forward + loss + finite check + backward + clip +
AdamW step) and inference (forward + top-k), images/s.

    .venv/bin/python -m bench.model_step [--presets tiny r50_fpn_1x] [--device cpu|cuda]
        [--sizes 800x1333] [--variants fp32 bf16 fp32+cl bf16+cl bf16+cl+compile]
        [--out rows.jsonl]
    .venv/bin/python -m bench.model_step --table rows.jsonl     # markdown table of saved rows

Inputs are random images of each size (default 800x1333, the reference test size; the tiny
preset also at its own 320x533) with 8 random boxes each. A variant joins a precision (fp32:
none; bf16: autocast, as ``precision: bf16`` trains) with ``cl`` (channels_last model and
input) and ``compile`` (``torch.compile`` of the model; the loss and the Hungarian matching
stay eager). Defaults: fp32 on CPU; on CUDA all five above. Inference is one image per call,
as the official repository measures it (23 img/s for R-50 with 100 proposals on a V100, from
COCO images at most 800x1333 and including data loading; random inputs at 800x1333 are the
largest such size). Prints a line per row: medians over ``--iters`` after ``--warmup``; the
first call's seconds (compilation for ``compile``) and CUDA peak memory are kept too. A variant
that fails prints its error and the others go on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from sparse_rcnn.models.config import preset
from sparse_rcnn.models.criterion import SetCriterion, Target
from sparse_rcnn.models.detector import SparseRCNN
from sparse_rcnn.models.postprocess import PostProcess
from sparse_rcnn.platform.engine.distributed import DistContext
from sparse_rcnn.platform.engine.train_step import autocast_for, train_step

OFFICIAL_INFER_IMG_S = 23.0  # official README, R-50 100 proposals, V100, 1 image per GPU
CUDA_VARIANTS = ["fp32", "bf16", "fp32+cl", "bf16+cl", "bf16+cl+compile"]


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


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timeit(fn: Callable[[], None], device: str, warmup: int, iters: int) -> tuple[float, float]:
    """``(median seconds of fn after warmup calls, seconds of the first call)``."""
    times = []
    for _ in range(warmup + iters):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times[warmup:]), times[0]


def gpu_busy(fn: Callable[[], None]) -> float:
    """Share of one call's wall time that CUDA kernels run (summed kernel time / wall time,
    one stream). Well below 1: the step waits on the host (kernel launches, host syncs such as
    the Hungarian matching on the CPU), and a faster GPU or lower precision cannot help."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t
    # Self device time counts each kernel once, under the op that launched it.
    kernel_us = sum(getattr(e, "self_device_time_total", 0.0) for e in prof.key_averages())
    return kernel_us / 1e6 / wall


def parse_variant(variant: str) -> tuple[str, bool, bool]:
    """``"bf16+cl+compile"`` -> ``("bf16", channels_last=True, compile=True)``."""
    parts = variant.split("+")
    precision, flags = parts[0], set(parts[1:])
    if precision not in ("fp32", "bf16") or not flags <= {"cl", "compile"}:
        raise ValueError(f"variant {variant!r}: expected fp32|bf16 [+cl] [+compile]")
    return precision, "cl" in flags, "compile" in flags


def bench_one(name: str, size: tuple[int, int], device: str, variant: str, batch: int,
              warmup: int, iters: int) -> dict:  # fmt: skip
    precision, channels_last, compiled = parse_variant(variant)
    torch.manual_seed(0)
    cfg = preset(name)
    model = SparseRCNN(cfg).to(device)
    images, sizes, targets = make_batch(batch, *size, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    fwd = torch.compile(model) if compiled else model
    criterion, post = SetCriterion(cfg), PostProcess(cfg.detections_per_image)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2.5e-5)
    ctx = DistContext(device=torch.device(device))
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def step():
        model.train()
        train_step(fwd, criterion, opt, images, sizes, targets, ctx, 1.0, precision)

    @torch.inference_mode()
    def infer():
        model.eval()
        with autocast_for(torch.device(device), precision):
            out = fwd(images[:1], sizes[:1])
        post(out)

    train_s, train_first = timeit(step, device, warmup, iters)
    infer_s, infer_first = timeit(infer, device, warmup, iters)
    row = {
        "preset": name,
        "input": f"{size[0]}x{size[1]}",
        "variant": variant,
        "batch": batch,
        "train_img_s": batch / train_s,
        "infer_img_s": 1 / infer_s,
        "first_train_s": train_first,
        "first_infer_s": infer_first,
    }
    if device.startswith("cuda"):
        row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        try:
            row["train_gpu_busy"], row["infer_gpu_busy"] = gpu_busy(step), gpu_busy(infer)
        except Exception as e:  # the profiler is optional to the figures above
            print(f"gpu busy: profiler failed: {type(e).__name__}: {e}", flush=True)
    return row


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return (f"{torch.cuda.get_device_name()}, torch {torch.__version__}, "
                f"CUDA {torch.version.cuda}")  # fmt: skip
    return f"cpu, {torch.get_num_threads()} threads, torch {torch.__version__}"


def line(r: dict) -> str:
    if "error" in r:
        return f"{r['preset']:>12} {r['input']:>9} {r['variant']:>16}  FAILED: {r['error']}"
    text = (f"{r['preset']:>12} {r['input']:>9} {r['variant']:>16}  "
            f"train {r['train_img_s']:8.3f} img/s  infer {r['infer_img_s']:8.3f} img/s  "
            f"(first calls {r['first_train_s']:.1f} s / {r['first_infer_s']:.1f} s)")  # fmt: skip
    if "peak_gib" in r:
        text += f"  peak {r['peak_gib']:.1f} GiB"
    if "train_gpu_busy" in r:
        text += f"  GPU busy {r['train_gpu_busy']:.0%} / {r['infer_gpu_busy']:.0%}"
    return text


def table(rows: list[dict]) -> str:
    """Markdown table for BENCHMARKS.md; inference also as a ratio to the official 23 img/s
    (R-50 rows on CUDA only: the official number is a V100's)."""
    out = ["| machine | preset | input | variant | train img/s | inference img/s | "
           "inference / official 23 | first train call s | peak GiB | GPU busy train / infer |",
           "|---|---|---|---|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in rows:
        if "error" in r:
            out.append(f"| {r['machine']} | {r['preset']} | {r['input']} | {r['variant']} | "
                       f"failed: {r['error'][:80]} | | | | | |")  # fmt: skip
            continue
        ratio = ""
        if r["preset"].startswith("r50") and "cpu" not in r["machine"].split(",")[0]:
            ratio = f"{r['infer_img_s'] / OFFICIAL_INFER_IMG_S:.2f}"
        peak = f"{r['peak_gib']:.1f}" if "peak_gib" in r else ""
        busy = (f"{r['train_gpu_busy']:.0%} / {r['infer_gpu_busy']:.0%}"
                if "train_gpu_busy" in r else "")  # fmt: skip
        out.append(f"| {r['machine']} | {r['preset']} | {r['input']} | {r['variant']} | "
                   f"{r['train_img_s']:.2f} | {r['infer_img_s']:.2f} | {ratio} | "
                   f"{r['first_train_s']:.1f} | {peak} | {busy} |")  # fmt: skip
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "r50_fpn_1x"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", nargs="+", default=None,
                        help="HxW inputs (default 800x1333; tiny also 320x533)")  # fmt: skip
    parser.add_argument(
        "--variants",
        nargs="+",
        default=None,
        help="default: fp32 on CPU, " + " ".join(CUDA_VARIANTS) + " on CUDA",
    )
    parser.add_argument("--batch", type=int, default=2, help="training images per step")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--out", type=Path, help="append each row as a JSON line")
    parser.add_argument("--table", type=Path, help="print the markdown table of a JSONL file")
    args = parser.parse_args()
    if args.table:
        rows = [json.loads(x) for x in args.table.read_text().splitlines() if x.strip()]
        print(table(rows))
        return
    cuda = args.device.startswith("cuda")
    variants = args.variants or (CUDA_VARIANTS if cuda else ["fp32"])
    for v in variants:
        parse_variant(v)  # refuse a typo before any work
    where = machine(args.device)
    print(f"device: {where}", flush=True)
    for name in args.presets:
        sizes = args.sizes or (["800x1333", "320x533"] if name == "tiny" else ["800x1333"])
        for size_text in sizes:
            size = tuple(int(x) for x in size_text.lower().split("x"))
            for variant in variants:
                try:
                    r = bench_one(name, size, args.device, variant, args.batch, args.warmup,
                                  args.iters)  # fmt: skip
                except Exception as e:  # one failing variant (compile, memory) is one row
                    first = (str(e).splitlines() or [""])[0][:300]
                    r = {"preset": name, "input": size_text, "variant": variant,
                         "error": f"{type(e).__name__}: {first}"}  # fmt: skip
                r["machine"] = where
                print(line(r), flush=True)
                if args.out:
                    with args.out.open("a") as f:
                        f.write(json.dumps(r) + "\n")
                if cuda:
                    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

"""Platform overhead: the same 2-worker DDP training steps under Ray Train and under torchrun.

    .venv/bin/python -m bench.platform_overhead [--steps 30] [--warmup 5] [--repeats 3]

Both launchers run :func:`worker` (the engine's ``train_step`` on the tiny preset, fixed random
batches of 2 images of 240x320 per worker, gloo) and report the median step time of rank 0.
The launchers alternate ``--repeats`` times in one run; the table gives each launcher's median
and the Ray / torchrun ratio (target: at most 1.05). Start-up time (worker group creation,
process-group init) is excluded: it is paid once per run, not per step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from sparse_rcnn.models.config import PRESETS
from sparse_rcnn.models.criterion import SetCriterion, Target
from sparse_rcnn.models.detector import SparseRCNN
from sparse_rcnn.platform.engine.distributed import DistContext
from sparse_rcnn.platform.engine.train_step import train_step

CFG = PRESETS["tiny"]


def worker(steps: int, warmup: int) -> list[float]:
    """Run ``warmup + steps`` DDP steps in an initialised process group; returns step seconds."""
    ctx = DistContext.current()
    torch.manual_seed(0)
    model = SparseRCNN(CFG).train()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(ctx.rank)
    images = torch.randn(2, 3, 240, 320, generator=g)
    sizes = torch.tensor([[240, 320]] * 2)
    boxes = torch.tensor([[10.0, 20.0, 90.0, 120.0], [100.0, 60.0, 220.0, 200.0]])
    targets = [Target(boxes, torch.tensor([0, 1]))] * 2
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        train_step(ddp, SetCriterion(CFG), opt, images, sizes, targets, ctx, 1.0, step=i)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return times


def _torchrun_entry(steps: int, warmup: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    times = worker(steps, warmup)
    if dist.get_rank() == 0:
        with open(out, "w") as f:
            json.dump(times, f)
    dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_torchrun(steps: int, warmup: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "times.json")
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
            "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
            "-m", "bench.platform_overhead", "--torchrun-worker", out,
            "--steps", str(steps), "--warmup", str(warmup),
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run(cmd, check=True, env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
        with open(out) as f:
            return statistics.median(json.load(f))


def _ray_worker(config: dict) -> dict:
    import ray.train

    times = worker(config["steps"], config["warmup"])
    ray.train.report({"median_step_s": statistics.median(times)})
    return {"median_step_s": statistics.median(times)}


def run_ray(steps: int, warmup: int) -> float:
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config={"steps": steps, "warmup": warmup},
        scaling_config=ray.train.ScalingConfig(num_workers=2),
        torch_config=TorchConfig(backend="gloo"),
        run_config=ray.train.RunConfig(storage_path=tempfile.mkdtemp()),
    )
    return trainer.fit().return_value["median_step_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--torchrun-worker", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torchrun_worker:
        _torchrun_entry(args.steps, args.warmup, args.torchrun_worker)
        return
    import ray

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    ray.init(num_cpus=2, logging_level="WARNING")
    results: dict[str, list[float]] = {"torchrun": [], "ray": []}
    for r in range(args.repeats):
        results["torchrun"].append(run_torchrun(args.steps, args.warmup))
        results["ray"].append(run_ray(args.steps, args.warmup))
        print(f"repeat {r}: torchrun {results['torchrun'][-1]:.3f} s/step, "
              f"ray {results['ray'][-1]:.3f} s/step", flush=True)  # fmt: skip
    t, rr = statistics.median(results["torchrun"]), statistics.median(results["ray"])
    print(f"\n| launcher | median step (s) |\n|---|---:|\n| torchrun | {t:.3f} |\n"
          f"| Ray Train | {rr:.3f} |\n\nratio Ray / torchrun = {rr / t:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()

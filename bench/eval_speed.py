"""COCO box evaluation speed: sparse_rcnn.platform.evaluation vs pycocotools and exact peers.

    .venv/bin/pip install -c constraints.txt -e '.[bench]'
    .venv/bin/python bench/eval_speed.py                 # val2017-sized case, minutes
    .venv/bin/python bench/eval_speed.py --images 500    # quick smoke run

Builds a deterministic synthetic case the size of COCO val2017 (5000 images, ~36k ground-truth
boxes with crowd regions and mask-like areas, 100 detections per image, 80 categories), then
times, each in a fresh forked process: one full evaluation by pycocotools, faster-coco-eval,
ultrafast-pycocotools, hotcoco and ours, and our image bootstrap (all 12 metrics per
replicate). Every tool starts from the same in-memory ground-truth dict and detections (a
results list for the peers, a Detections array set for us; the row "+ list" adds our
conversion from the list). Peak memory is the process's peak RSS above its RSS before the tool
ran. The table ends with the ratios the issue asks for, measured in this one run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.metadata
import io
import multiprocessing as mp
import platform as stdlib_platform
import statistics
import sys
import time

import numpy as np

from sparse_rcnn.platform.data.categories import COCO_CATEGORY_IDS
from sparse_rcnn.platform.evaluation.bootstrap import bootstrap_prepared
from sparse_rcnn.platform.evaluation.coco_eval import evaluate, prepare
from sparse_rcnn.platform.evaluation.detections import Detections


def make_case(n_images: int = 5000, seed: int = 0) -> tuple[dict, list[dict]]:
    """A val2017-sized COCO ground truth and a 100-detections-per-image results list."""
    rng = np.random.default_rng(seed)
    cats = np.array(COCO_CATEGORY_IDS)
    cat_p = 1.0 / np.arange(1, 81) ** 0.9
    cat_p /= cat_p.sum()
    images, anns, dets = [], [], []
    for img_id in range(1, n_images + 1):
        W, H = int(rng.integers(320, 641)), int(rng.integers(240, 641))
        images.append({"id": img_id, "width": W, "height": H, "file_name": f"{img_id:012d}.jpg"})
        n_gt = int(rng.poisson(7.3)) if rng.random() > 0.01 else 0
        img_cats = rng.choice(cats, size=max(1, int(rng.poisson(2.5))), p=cat_p)
        side = np.exp(rng.uniform(np.log(6), np.log(400), n_gt))
        ar = np.exp(rng.normal(0, 0.5, n_gt))
        w, h = np.minimum(side * ar, W - 1), np.minimum(side / ar, H - 1)
        gt_boxes = np.stack([rng.uniform(0, W - w), rng.uniform(0, H - h), w, h], 1)
        gt_cats = rng.choice(img_cats, n_gt)
        crowd = rng.random(n_gt) < 0.01
        mask_area = w * h * rng.uniform(0.5, 0.95, n_gt)
        for j in range(n_gt):
            anns.append({
                "id": len(anns) + 1, "image_id": img_id, "category_id": int(gt_cats[j]),
                "bbox": np.round(gt_boxes[j], 2).tolist(), "area": float(mask_area[j]),
                "iscrowd": int(crowd[j]),
            })  # fmt: skip
        # 1-3 jittered copies of each box (85% right class), then background up to 100.
        copies = rng.integers(1, 4, n_gt)
        src = np.repeat(np.arange(n_gt), copies)
        scale = np.repeat(np.stack([w, h, w, h], 1), copies, axis=0)
        boxes = gt_boxes[src] + rng.normal(0, 0.08, (len(src), 4)) * scale
        labels = np.where(rng.random(len(src)) < 0.85, gt_cats[src], rng.choice(cats, len(src)))
        scores = rng.beta(4, 2, len(src))
        n_bg = max(0, 100 - len(src))
        bs = np.exp(rng.uniform(np.log(4), np.log(300), n_bg))
        bw = bs * np.exp(rng.normal(0, 0.5, n_bg))
        bg = np.stack([rng.uniform(0, W, n_bg), rng.uniform(0, H, n_bg), bw, bs**2 / bw], 1)
        bg_labels = np.where(
            rng.random(n_bg) < 0.5, rng.choice(img_cats, n_bg), rng.choice(cats, n_bg, p=cat_p)
        )
        boxes = np.concatenate([boxes, bg])[:100]
        boxes[:, 2:] = np.maximum(boxes[:, 2:], 1.0)
        labels = np.concatenate([labels, bg_labels])[:100]
        scores = np.concatenate([scores, rng.beta(1, 5, n_bg)])[:100]
        for b, c, s in zip(boxes.tolist(), labels.tolist(), scores.tolist(), strict=True):
            dets.append({"image_id": img_id, "category_id": c, "bbox": b, "score": s})
    categories = [{"id": int(c), "name": f"class{c}"} for c in cats]
    return {"images": images, "annotations": anns, "categories": categories}, dets


# --- one function per tool: (ground truth dict, results list) -> 12 stats -----------------


def run_pycocotools(gt: dict, dets: list[dict]) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    ev = COCOeval(coco, coco.loadRes(dets), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return np.array(ev.stats)


def run_faster_coco_eval(gt: dict, dets: list[dict]) -> np.ndarray:
    from faster_coco_eval import COCO, COCOeval_faster

    coco = COCO(gt)
    ev = COCOeval_faster(coco, coco.loadRes(dets), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return np.array(ev.stats)


def run_ultrafast(gt: dict, dets: list[dict]) -> np.ndarray:
    from ultrafast_pycocotools import COCO, COCOeval

    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    ev = COCOeval(coco, coco.loadRes(dets), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return np.array(ev.stats)


def run_hotcoco(gt: dict, dets: list[dict]) -> np.ndarray:
    import hotcoco

    coco = hotcoco.COCO(gt)
    ev = hotcoco.COCOeval(coco, coco.load_res(dets), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return np.array(ev.stats)


def run_ours_list(gt: dict, dets: list[dict]) -> np.ndarray:
    return evaluate(gt, Detections.from_coco_results(dets)).stats_array()


def run_ours(gt: dict, dets: Detections) -> np.ndarray:
    return evaluate(gt, dets).stats_array()


PEERS = {
    "pycocotools": ("pycocotools", run_pycocotools),
    "faster-coco-eval": ("faster-coco-eval", run_faster_coco_eval),
    "ultrafast-pycocotools": ("ultrafast-pycocotools", run_ultrafast),
    "hotcoco": ("hotcoco", run_hotcoco),
}


# --- measurement in a forked child: seconds per run, peak RSS above the start ---------------


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _child(conn, fn, args, runs, copy_args) -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak-RSS mark (VmHWM) to the current RSS
    except OSError:
        pass
    base = _rss_kib("VmRSS")
    times, out = [], None
    for _ in range(runs):
        call_args = copy.deepcopy(args) if copy_args else args  # loadRes mutates its input
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            out = fn(*call_args)
        times.append(time.perf_counter() - t0)
    conn.send((times, (_rss_kib("VmHWM") - base) / 1024, out))
    conn.close()


def measure(fn, args: tuple, runs: int, copy_args: bool = False) -> tuple[float, float, object]:
    """Median seconds over ``runs``, peak MiB, and the last output, in a forked process."""
    parent, child = mp.get_context("fork").Pipe()
    proc = mp.get_context("fork").Process(target=_child, args=(child, fn, args, runs, copy_args))
    proc.start()
    times, peak, out = parent.recv()
    proc.join()
    return statistics.median(times), peak, out


def bootstrap_job(gt: dict, dets: Detections, replicates: int, seed: int):
    acc = prepare(gt, dets)[1]
    return bootstrap_prepared(acc, replicates, seed)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--replicates", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=5, help="rounds over the fast tools (median)")
    ap.add_argument("--skip", nargs="*", default=[], choices=sorted(PEERS), help="peers to skip")
    args = ap.parse_args()

    t0 = time.perf_counter()
    gt, results = make_case(args.images, args.seed)
    dets = Detections.from_coco_results(results)
    print(
        f"case: {len(gt['images'])} images, {len(gt['annotations'])} ground-truth boxes, "
        f"{len(results)} detections, {len(gt['categories'])} categories "
        f"(built in {time.perf_counter() - t0:.1f} s)",
        flush=True,
    )
    print(f"python {stdlib_platform.python_version()}, numpy {np.__version__}", flush=True)

    # (label, function, arguments, copy arguments, slow); slow tools run once / three times,
    # the fast ones once per round, interleaved, so that load drift hits them alike.
    tools = []
    for name, (dist, fn) in PEERS.items():
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            print(f"skipping {name}: not installed (pip install -e '.[bench]')", flush=True)
            continue
        if name not in args.skip:
            slow = {"pycocotools": 1, "faster-coco-eval": 3}.get(name, 0)
            tools.append((f"{name} {version}", fn, (gt, results), True, slow))
    tools.append(("ours: evaluate", run_ours, (gt, dets), False, 0))
    tools.append(("ours: evaluate + list", run_ours_list, (gt, results), False, 0))

    slow_runs = {t[0]: t[4] for t in tools if t[4]}
    times: dict[str, list[float]] = {}
    peaks: dict[str, float] = {}
    outs: dict[str, np.ndarray] = {}
    for label, fn, fargs, copy_args, slow in tools:
        if slow:
            sec, peaks[label], outs[label] = measure(fn, fargs, slow, copy_args)
            times[label] = [sec]
            print(f"  {label}: {sec:.2f} s", flush=True)
    for _ in range(args.rounds):
        for label, fn, fargs, copy_args, slow in tools:
            if not slow:
                sec, peak, outs[label] = measure(fn, fargs, 1, copy_args)
                times.setdefault(label, []).append(sec)
                peaks[label] = max(peak, peaks.get(label, 0.0))
    boot_sec, boot_peak, boot = measure(bootstrap_job, (gt, dets, args.replicates, args.seed), 1)
    print(f"  ours: bootstrap {args.replicates}: {boot_sec:.1f} s", flush=True)
    sec = {label: statistics.median(v) for label, v in times.items()}

    ref_label = next((label for label in outs if label.startswith("pycocotools ")), None)
    ref = outs.get(ref_label)

    def equal(out: np.ndarray) -> str:
        if ref is None:
            return "-"
        return "yes" if np.abs(np.asarray(out) - ref).max() <= 1e-9 else "NO"

    print(f"\nstats equal: max |difference| to {ref_label} <= 1e-9 over the 12 stats")
    header = f"{'tool':34s} {'seconds':>9s} {'peak MiB':>9s} {'runs':>5s}  stats equal"
    print(header + "\n" + "-" * len(header))
    for label in sec:
        mark = "reference" if label == ref_label else equal(outs[label])
        runs = slow_runs.get(label, len(times[label]))
        print(f"{label:34s} {sec[label]:9.2f} {peaks[label]:9.0f} {runs:5d}  {mark}")
    point_ok = equal(np.where(np.isnan(boot.point), -1.0, boot.point))
    label = f"ours: bootstrap, {args.replicates} replicates"
    print(f"{label:34s} {boot_sec:9.2f} {boot_peak:9.0f} {1:5d}  point {point_ok}")

    print()
    peers = {label: s for label, s in sec.items() if not label.startswith("ours")}
    if ref_label is not None:
        ratio = boot_sec / sec[ref_label]
        print(f"bootstrap of {args.replicates} / one pycocotools evaluation: {ratio:.3f}")
    fast = {label: s for label, s in peers.items() if label != ref_label}
    if fast:
        best_label, best = min(fast.items(), key=lambda kv: kv[1])
        ours = sec["ours: evaluate"]
        print(f"fastest exact peer: {best_label}, {best:.2f} s; ours / it: {ours / best:.2f}")
        print(
            f"{args.replicates} x {best_label} / our bootstrap of {args.replicates}: "
            f"{args.replicates * best / boot_sec:.1f}x"
        )
    print(
        f"AP {boot.point[0]:.4f}, {100 * boot.confidence:g}% CI "
        f"[{boot.ci_low[0]:.4f}, {boot.ci_high[0]:.4f}], bootstrap bias {boot.bias[0]:+.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

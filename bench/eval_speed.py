"""COCO box evaluation speed: sparse_rcnn.platform.evaluation vs pycocotools and exact peers.

    .venv/bin/pip install -c constraints.txt -e '.[bench]'
    .venv/bin/python bench/eval_speed.py                       # val2017-sized case, minutes
    .venv/bin/python bench/eval_speed.py --part process        # whole processes only
    .venv/bin/python bench/eval_speed.py --images 500          # quick smoke run

Builds a deterministic synthetic case the size of COCO val2017 (5000 images, ~36k ground-truth
boxes with crowd regions and mask-like areas, 100 detections per image, 80 categories), then
measures two things.

In memory (``--part memory``): each in a fresh forked process, one full evaluation by
pycocotools, faster-coco-eval, ultrafast-pycocotools, hotcoco and ours, and our image bootstrap
(all 12 metrics per replicate). Every tool starts from the same in-memory ground-truth dict and
detections (a results list for the peers, a Detections array set for us; the row "+ list" adds
our conversion from the list). Peak memory is the process's peak RSS above its RSS before the
tool ran.

Whole process (``--part process``): the case is written once as ``gt.json`` and ``dets.json``
(a COCO results list, ``json.dumps``), and each tool runs as a fresh interpreter on those files,
from start-up to printed metrics: ours is the real ``sparse-rcnn eval`` command, each peer a
script doing its ``COCO(gt.json)``, ``loadRes(dets.json)``, ``COCOeval`` evaluate / accumulate
/ summarize. Seconds are wall-clock from spawn to exit (median over runs; the fast tools run
once per round, interleaved, so that load drift hits them alike); peak memory is the child's
maximum RSS (``wait4`` in a small launcher, so that the bench process's own pages do not
count).

Each part ends with the ratios the issues ask for, measured in that one run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.metadata
import io
import json
import multiprocessing as mp
import os
import platform as stdlib_platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    ap.add_argument(
        "--slow-runs", type=int, default=3,
        help="whole-process runs of pycocotools and faster-coco-eval (median)",
    )  # fmt: skip
    ap.add_argument("--part", choices=("memory", "process", "both"), default="both")
    ap.add_argument("--skip", nargs="*", default=[], choices=sorted(PEERS), help="peers to skip")
    args = ap.parse_args()

    t0 = time.perf_counter()
    gt, results = make_case(args.images, args.seed)
    print(
        f"case: {len(gt['images'])} images, {len(gt['annotations'])} ground-truth boxes, "
        f"{len(results)} detections, {len(gt['categories'])} categories "
        f"(built in {time.perf_counter() - t0:.1f} s)",
        flush=True,
    )
    print(f"python {stdlib_platform.python_version()}, numpy {np.__version__}", flush=True)
    print(f"machine: {_machine()}", flush=True)
    if args.part in ("memory", "both"):
        in_memory(args, gt, results)
    if args.part in ("process", "both"):
        whole_process(args, gt, results)
    print(f"\nload average at the end: {_load()}")
    return 0


def _installed(name: str) -> str | None:
    """The installed version of peer ``name``, or None (and a note) when it is missing."""
    try:
        return importlib.metadata.version(PEERS[name][0])
    except importlib.metadata.PackageNotFoundError:
        print(f"skipping {name}: not installed (pip install -e '.[bench]')", flush=True)
        return None


def _machine() -> str:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    return f"{os.cpu_count()} CPUs ({model or stdlib_platform.machine()}), load average {_load()}"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def in_memory(args: argparse.Namespace, gt: dict, results: list[dict]) -> None:
    """The in-memory comparison (module docstring), printed as a table and ratios."""
    print("\n== in memory: same ground-truth dict and detections for every tool ==", flush=True)
    dets = Detections.from_coco_results(results)
    # (label, function, arguments, copy arguments, slow); slow tools run once / three times,
    # the fast ones once per round, interleaved, so that load drift hits them alike.
    tools = []
    for name, (_, fn) in PEERS.items():
        if name not in args.skip and (version := _installed(name)):
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


# --- whole process on JSON files: each tool a fresh interpreter -----------------------------

# Each peer script: argv = gt.json dets.json; prints the 12 stats as a JSON list last.
_PEER_SCRIPT = {
    "pycocotools": "from pycocotools.coco import COCO\n"
    "from pycocotools.cocoeval import COCOeval as E\n"
    "gt = COCO(sys.argv[1]); ev = E(gt, gt.loadRes(sys.argv[2]), 'bbox')",
    "faster-coco-eval": "from faster_coco_eval import COCO, COCOeval_faster as E\n"
    "gt = COCO(sys.argv[1]); ev = E(gt, gt.loadRes(sys.argv[2]), 'bbox')",
    "ultrafast-pycocotools": "from ultrafast_pycocotools import COCO, COCOeval as E\n"
    "gt = COCO(sys.argv[1]); ev = E(gt, gt.loadRes(sys.argv[2]), 'bbox')",
    "hotcoco": "import hotcoco\n"
    "gt = hotcoco.COCO(sys.argv[1]); ev = hotcoco.COCOeval(gt, gt.load_res(sys.argv[2]), 'bbox')",
}
_SCRIPT = "import json, sys\n{}\nev.evaluate(); ev.accumulate(); ev.summarize()\n" + (
    "print(json.dumps([float(x) for x in ev.stats]))"
)


# Runs argv[1:] and reports its wall seconds, peak RSS (KiB) and exit status on stderr. The
# bench process itself is large (the case as Python objects), and a child's peak RSS counts
# the parent's pages it shares between fork and exec; forking from this small interpreter
# keeps that out of the tool's number.
_LAUNCHER = """import os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.dup2(1, 2)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - t0, usage.ru_maxrss, os.waitstatus_to_exitcode(status), file=sys.stderr)
"""


def run_process(argv: list[str]) -> tuple[float, float, str]:
    """Wall seconds from spawn to exit, the process's peak RSS in MiB, and its output."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, *argv], stdout=out, stderr=subprocess.PIPE
        )
        out.seek(0)
        text = out.read().decode(errors="replace")
    seconds, max_rss_kib, status = proc.stderr.decode().split()[-3:]
    if proc.returncode != 0 or int(status) != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} ... exited {status}:\n{text[-2000:]}")
    return float(seconds), int(max_rss_kib) / 1024, text


def whole_process(args: argparse.Namespace, gt: dict, results: list[dict]) -> None:
    """The whole-process comparison (module docstring), printed as a table and ratios."""
    print("\n== whole process: fresh interpreter, gt.json + dets.json to printed metrics ==")
    ours_cli = shutil.which("sparse-rcnn", path=str(Path(sys.executable).parent))
    if ours_cli is None:
        raise SystemExit("sparse-rcnn is not installed next to this python (make install)")
    with tempfile.TemporaryDirectory(prefix="eval_speed_") as tmp:
        gt_path, dets_path, out_path = (Path(tmp) / n for n in ("gt.json", "dets.json", "o.json"))
        gt_path.write_text(json.dumps(gt))
        dets_path.write_text(json.dumps(results))
        mib = dets_path.stat().st_size / 2**20
        print(f"files: gt.json {gt_path.stat().st_size / 2**20:.1f} MiB, dets.json {mib:.1f} MiB")
        files = [str(gt_path), str(dets_path)]
        ours = [ours_cli, "eval", "--gt", files[0], "--detections", files[1]]
        # label -> (argv, runs or 0 for "once per round", reads the 12 stats)
        tools: dict[str, tuple[list[str], int, object]] = {}
        for name in PEERS:
            if name not in args.skip and (version := _installed(name)):
                script = _SCRIPT.format(_PEER_SCRIPT[name])
                runs = {"pycocotools": args.slow_runs, "faster-coco-eval": args.slow_runs}
                tools[f"{name} {version}"] = (
                    [sys.executable, "-c", script, *files], runs.get(name, 0), _last_json_line
                )  # fmt: skip
        tools["ours: sparse-rcnn eval"] = (
            [*ours, "--json-out", str(out_path)], 0, lambda _: _json_stats(out_path)
        )  # fmt: skip
        times: dict[str, list[float]] = {label: [] for label in tools}
        peaks: dict[str, list[float]] = {label: [] for label in tools}
        outs: dict[str, np.ndarray] = {}

        def once(label: str) -> None:
            argv, _, read = tools[label]
            sec, peak, text = run_process(argv)
            times[label].append(sec)
            peaks[label].append(peak)
            outs[label] = np.asarray(read(text))

        for label, (_, runs, _) in tools.items():
            for _ in range(runs):
                once(label)
            if runs:
                print(f"  {label}: {statistics.median(times[label]):.2f} s", flush=True)
        for _ in range(args.rounds):
            for label, (_, runs, _) in tools.items():
                if not runs:
                    once(label)
    _process_table(times, peaks, outs)


def _last_json_line(text: str) -> list[float]:
    return json.loads(text.strip().splitlines()[-1])


def _json_stats(path: Path) -> list[float]:
    return list(json.loads(path.read_text())["stats"].values())


def _process_table(times: dict, peaks: dict, outs: dict) -> None:
    sec = {label: statistics.median(v) for label, v in times.items()}
    ref_label = next((k for k in outs if k.startswith("pycocotools ")), None)
    ref_label = ref_label or next((k for k in outs if k.startswith("hotcoco ")), None)
    print(f"\nstats equal: max |difference| to {ref_label} <= 1e-9 over the 12 stats")
    header = (
        f"{'tool':34s} {'median s':>9s} {'min s':>7s} {'max s':>7s} {'peak MiB':>9s} "
        f"{'runs':>5s}  stats equal"
    )
    print(header + "\n" + "-" * len(header))
    for label in sec:
        diff = np.abs(outs[label] - outs[ref_label]).max() if ref_label else np.nan
        mark = "reference" if label == ref_label else ("yes" if diff <= 1e-9 else "NO")
        print(
            f"{label:34s} {sec[label]:9.2f} {min(times[label]):7.2f} {max(times[label]):7.2f} "
            f"{max(peaks[label]):9.0f} {len(times[label]):5d}  {mark}"
        )
    ours = sec["ours: sparse-rcnn eval"]
    print()
    for label, s in sec.items():
        if not label.startswith("ours"):
            print(f"whole process, ours / {label}: {ours / s:.2f}")


if __name__ == "__main__":
    sys.exit(main())

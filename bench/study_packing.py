"""Study packing efficiency and the per-trial fixed cost of a seed study.

    .venv/bin/python -m bench.study_packing [STUDY.yaml] [--repeats 3]
    .venv/bin/python -m bench.study_packing --study-id STUDY_ID   # a finished study, no re-run

Each repeat runs the study (default ``bench/specs/packing.yaml``: 8 trials, 2 at a time on 2
cores) in a fresh state directory on one local Ray started once (all CPUs).

Efficiency = ideal / actual, where ideal = sum(trial times) / max_concurrent_trials and actual =
the wall time of ``Tuner.fit()``. A trial's time is its ``wall_s`` in ``results.parquet``:
measured inside the trial function, from its MLflow run's creation to its result, so it
includes the trial's own set-up (a multi-worker trial's Ray Train worker group) and evaluation;
1.0 means the slots were never idle: no Tune set-up before the first trial, no gap between
trials, no slot left idle at the end.

The fixed cost is what a trial spends not training or evaluating, on the slot's time line
(medians over the trials):

- ``startup``: the trial function is entered -> its first training iteration starts;
- ``tail``: its last evaluation's metrics are logged -> the trial function returns (pictures,
  detections and final checkpoint to MLflow, Ray Train shutting down, the run closed);
- ``gap``: the trial function returns -> the next trial function in the same slot is entered
  (Tune: result processing, a new or reused trial actor and its placement group).

``fixed = startup + tail + gap``. Once per study, not per trial: ``launch``, from the start of
``Tuner.fit()`` to the first trial function's entry (Tune's set-up, the trial actors' processes
and their imports of torch, torchvision and MLflow), during which every slot is idle.

Entry and return times are ``started_at`` / ``ended_at`` in ``results.parquet``; the fit's start
is its end in ``timing.json`` less its wall time. The first iteration's start comes from MLflow:
the engine logs ``train/images_per_s`` over a window that starts with the epoch's first batch,
so the first logged point, at step k (a fresh trial's first window), started k x batch x
workers images before its timestamp. Slots are rebuilt from the times: a trial takes the slot
that freed last before it started.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
from pathlib import Path

from sparse_rcnn.platform.tracking import names

COST_KEYS = ("startup_s", "tail_s", "gap_s", "fixed_s", "launch_s")


def efficiency(rows: list[dict], wall_s: float, concurrency: int) -> dict[str, float]:
    total = sum(r["wall_s"] for r in rows)
    ideal = total / concurrency
    return {"trials": len(rows), "concurrency": concurrency, "sum_trial_s": total,
            "ideal_s": ideal, "wall_s": wall_s, "efficiency": ideal / wall_s}  # fmt: skip


def _training_span(uri: str, run_id: str) -> tuple[float, float]:
    """``(first iteration start, last evaluation logged)`` of a trial's run, epoch seconds."""
    from sparse_rcnn.platform.tracking.runs import client

    c = client(uri)
    params = c.get_run(run_id).data.params
    images_per_step = int(params["batch_size_per_worker"]) * int(params["scaling.num_workers"])
    speed = min(c.get_metric_history(run_id, names.TRAIN_PREFIX + "images_per_s"),
                key=lambda m: m.step)  # fmt: skip
    first = speed.timestamp / 1000 - speed.step * images_per_step / speed.value
    last_eval = max(c.get_metric_history(run_id, names.AP), key=lambda m: m.step)
    return first, last_eval.timestamp / 1000


def _slot_gaps(rows: list[dict], concurrency: int) -> list[float]:
    """End of a trial -> start of the next one in its slot, for every trial with a successor."""
    slots: list[float | None] = [None] * concurrency  # each slot's last trial end
    gaps = []
    for r in sorted(rows, key=lambda r: r["started_at"]):
        free = [i for i, end in enumerate(slots) if end is None or end <= r["started_at"]]
        if not free:  # clocks of two processes a few ms apart; take the slot that frees first
            free = [min(range(concurrency), key=lambda i: slots[i])]
        i = max(free, key=lambda i: -math.inf if slots[i] is None else slots[i])
        if slots[i] is not None:
            gaps.append(r["started_at"] - slots[i])
        slots[i] = r["ended_at"]
    return gaps


def fixed_cost(rows: list[dict], uri: str, concurrency: int) -> dict[str, float]:
    """Median start-up, tail and gap of ``rows`` (trials that ran, not results read back), and
    their sum."""
    ran = [r for r in rows if not r["reused"] and math.isfinite(r.get("started_at", math.nan))]
    startup, tail = [], []
    for r in ran:
        first, last_eval = _training_span(uri, r["run_id"])
        startup.append(first - r["started_at"])
        tail.append(r["ended_at"] - last_eval)
    gaps = _slot_gaps(ran, concurrency)
    out = {
        "startup_s": statistics.median(startup) if startup else math.nan,
        "tail_s": statistics.median(tail) if tail else math.nan,
        "gap_s": statistics.median(gaps) if gaps else math.nan,
    }
    out["fixed_s"] = out["startup_s"] + out["tail_s"] + out["gap_s"]
    return out


def launch(rows: list[dict], folder: Path) -> float:
    """Seconds from the (last) ``Tuner.fit()`` start to the first trial function's entry."""
    fit = json.loads((folder / "timing.json").read_text())[-1]
    return min(r["started_at"] for r in rows) - (fit["ended"] - fit["wall_s"])


def run_once(spec: str) -> dict[str, float]:
    from sparse_rcnn.platform.orchestration.results import read_results
    from sparse_rcnn.platform.orchestration.study import start_study
    from sparse_rcnn.platform.spec.study import load_study

    os.environ["SPARSE_RCNN_STATE_DIR"] = tempfile.mkdtemp(prefix="packing-")
    outcome = start_study(load_study(spec))
    assert outcome.finished, "the study did not finish"
    rows = read_results(outcome.results_path)
    bad = [r["trial_key"] for r in rows if r["status"] != "ok"]
    assert not bad, f"trials failed: {bad}"
    return {
        **efficiency(rows, outcome.wall_s, outcome.concurrency),
        **fixed_cost(rows, outcome.tracking_uri, outcome.concurrency),
        "launch_s": launch(rows, outcome.folder),
    }


def from_study(study_id: str) -> dict[str, float]:
    from sparse_rcnn.platform.orchestration.results import read_results
    from sparse_rcnn.platform.orchestration.study_record import (
        RESULTS_FILE,
        StudyRecord,
        study_folder,
    )

    folder = study_folder(study_id)
    record = StudyRecord.load(folder)
    rows = read_results(folder / RESULTS_FILE)
    wall = sum(f["wall_s"] for f in json.loads((folder / "timing.json").read_text()))
    out = efficiency(rows, wall, record.max_concurrent_trials)
    if "started_at" in rows[0]:  # studies run before the times were recorded have none
        out.update(fixed_cost(rows, record.tracking_uri, record.max_concurrent_trials))
        out["launch_s"] = launch(rows, folder)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "spec", nargs="?", default=str(Path(__file__).parent / "specs" / "packing.yaml")
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--study-id", help="measure a finished study instead of running one")
    args = parser.parse_args()
    if args.study_id:
        print(json.dumps(from_study(args.study_id), indent=1))
        return
    import ray

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    ray.init(num_cpus=os.cpu_count(), logging_level="WARNING")
    results = []
    for i in range(args.repeats):
        res = run_once(args.spec)
        results.append(res)
        print(f"repeat {i}: " + json.dumps({k: round(v, 3) for k, v in res.items()}), flush=True)
    print("| repeat | trials | concurrency | sum of trial s | ideal s | actual s | efficiency "
          "| start-up s | tail s | gap s | fixed s | launch s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, r in enumerate(results):
        print(f"| {i} | {r['trials']} | {r['concurrency']} | {r['sum_trial_s']:.1f} | "
              f"{r['ideal_s']:.1f} | {r['wall_s']:.1f} | {r['efficiency']:.3f} | "
              + " | ".join(f"{r[k]:.1f}" for k in COST_KEYS) + " |")  # fmt: skip
    med = {k: statistics.median(r[k] for r in results) for k in ("efficiency", *COST_KEYS)}
    print(f"median efficiency {med['efficiency']:.3f}; median per-trial fixed cost "
          f"{med['fixed_s']:.1f} s (start-up {med['startup_s']:.1f}, tail {med['tail_s']:.1f}, "
          f"gap {med['gap_s']:.1f}); launch {med['launch_s']:.1f} s once per study")  # fmt: skip


if __name__ == "__main__":
    main()

"""Study packing efficiency: a study's wall time against the ideal sum(trial times) / concurrency.

    .venv/bin/python -m bench.study_packing [STUDY.yaml] [--repeats 3]
    .venv/bin/python -m bench.study_packing --study-id STUDY_ID   # a finished study, no re-run

Each repeat runs the study (default ``bench/specs/packing.yaml``: 8 trials, 2 at a time on 2
cores) in a fresh state directory on one local Ray started once (all CPUs). A trial's time is
its ``wall_s`` in ``results.parquet``: measured inside the trial function, from its start to its
result, so it includes the trial's own Ray Train start-up (worker group, imports) and evaluation.
The study's time is the wall time of ``Tuner.fit()``. Efficiency = ideal / actual, where
ideal = sum(trial times) / max_concurrent_trials: 1.0 means the slots were never idle and Tune
added nothing between trials. Target: at least 0.85.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path


def efficiency(rows: list[dict], wall_s: float, concurrency: int) -> dict[str, float]:
    total = sum(r["wall_s"] for r in rows)
    ideal = total / concurrency
    return {"trials": len(rows), "concurrency": concurrency, "sum_trial_s": total,
            "ideal_s": ideal, "wall_s": wall_s, "efficiency": ideal / wall_s}  # fmt: skip


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
    return efficiency(rows, outcome.wall_s, outcome.concurrency)


def from_study(study_id: str) -> dict[str, float]:
    from sparse_rcnn.platform.orchestration.results import read_results
    from sparse_rcnn.platform.orchestration.study import RESULTS_FILE, StudyRecord, study_folder

    folder = study_folder(study_id)
    record = StudyRecord.load(folder)
    rows = read_results(folder / RESULTS_FILE)
    wall = sum(f["wall_s"] for f in json.loads((folder / "timing.json").read_text()))
    return efficiency(rows, wall, record.max_concurrent_trials)


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
    print("| repeat | trials | concurrency | sum of trial s | ideal s | actual s | efficiency |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for i, r in enumerate(results):
        print(f"| {i} | {r['trials']} | {r['concurrency']} | {r['sum_trial_s']:.1f} | "
              f"{r['ideal_s']:.1f} | {r['wall_s']:.1f} | {r['efficiency']:.3f} |")  # fmt: skip
    print(f"median efficiency: {statistics.median(r['efficiency'] for r in results):.3f}")


if __name__ == "__main__":
    main()

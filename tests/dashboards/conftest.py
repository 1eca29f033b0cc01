"""Small hand-made studies for the dashboard tests: results rows as ``results.parquet`` holds
them (COCO fractions) and the real analysis JSON of those rows (AP points)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparse_rcnn.platform.stats.analysis import analyze
from sparse_rcnn.platform.stats.table import Run

SETTINGS = ("lr=0.002", "lr=0.005", "lr=0.01")
# Final AP (fractions) per setting and replicate; the last trial of lr=0.01 failed.
FINAL = {
    "lr=0.002": (0.0100, 0.0120, 0.0090, 0.0110),
    "lr=0.005": (0.0150, 0.0170, 0.0140, 0.0165),
    "lr=0.01": (0.0105, 0.0118, 0.0098, math.nan),
}
EPOCHS = (1, 2, 3)


def make_rows() -> list[dict]:
    rows = []
    for s in SETTINGS:
        for r, final in enumerate(FINAL[s]):
            ok = math.isfinite(final)
            history = [final * e / len(EPOCHS) for e in EPOCHS] if ok else []
            rows.append(
                {
                    "trial_key": f"{s}-r{r}",
                    "setting_label": s,
                    "source": "all",
                    "replicate": r,
                    "seed": 10 + r,
                    "status": "ok" if ok else "error",
                    "AP": final,
                    "eval_epochs": list(EPOCHS[: len(history)]),
                    "eval_AP": history,
                }
            )
    return rows


def make_report(rows: list[dict], image_bootstrap: bool = True) -> dict:
    runs = [
        Run(r["setting_label"], r["seed"], 100 * r["AP"], r["source"], r["replicate"],
            r["trial_key"])
        for r in rows
    ]  # fmt: skip
    reps = None
    if image_bootstrap:
        rng = np.random.default_rng(1)
        reps = {r.key: r.value + rng.normal(0, 0.1, 200) for r in runs if math.isfinite(r.value)}
    analysis = analyze(runs, metric="AP", unit="AP points (COCO metric x 100)", effect_size=0.3,
                       image_replicates=reps, min_runs=0, run_word="trial")  # fmt: skip
    return analysis.to_json()


def make_decompose_report() -> dict:
    rng = np.random.default_rng(3)
    runs = []
    spread = {"all": 0.4, "init": 0.3, "data_order": 0.15, "nondeterminism": 0.05}
    for s in ("lr=0.002", "lr=0.005"):
        for src, sd in spread.items():
            for r in range(4):
                runs.append(Run(s, r, 1.0 + rng.normal(0, sd), src, r, f"{s}-{src}-r{r}"))
    return analyze(runs, metric="AP", unit="AP points", effect_size=0.3).to_json()


@pytest.fixture
def rows() -> list[dict]:
    return make_rows()


@pytest.fixture
def report(rows) -> dict:
    return make_report(rows)


@pytest.fixture
def decompose_report() -> dict:
    return make_decompose_report()

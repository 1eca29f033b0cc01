"""The sequential analysis of a table whose runs carry a ``wave``: each setting against the
baseline, wave by wave, with ``sequential.decide`` (the rules the study driver applies after
each wave), and the design's plan at sigma as estimated.

Per comparison (a minus the baseline, ``alpha / m`` each with m comparisons, as the fixed
analysis's simultaneous intervals):

- Paired by replicate: a pair counts from the later of its two runs' waves; unpaired: each
  wave's finished runs of both settings (Welch). Failed runs are left out.
- ``max_seeds``: the study's most seeds per setting; by default the most runs any setting has
  in the table (then the comparison that ran longest ends at its final look, which spends all
  remaining alpha). A comparison whose setting has ``max_seeds`` runs is at its final look.
- The plan (``sequential_plan.plan_sequential``) simulates the design with looks after the
  baseline's cumulative runs per wave (``max_seeds`` appended when the table stops short), at
  the comparison's sigma (std of the differences, or pooled std): its power at the effect of
  interest, the average seeds per setting, and the fixed design with the same power.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sparse_rcnn.platform.stats.comparison import pooled_sigma
from sparse_rcnn.platform.stats.sequential import SequentialDesign, SequentialResult, decide
from sparse_rcnn.platform.stats.sequential_plan import SequentialPlan, plan_sequential
from sparse_rcnn.platform.stats.spending import Spending
from sparse_rcnn.platform.stats.table import Run

PLAN_SIMS = 4000  # simulated studies per plan in a report (MC SE of power <= 0.008)


@dataclass(frozen=True)
class SequentialComparison:
    """One setting against the baseline, wave by wave."""

    a: str
    b: str
    result: SequentialResult
    sigma: float  # std of the per-replicate differences (paired) or pooled std (unpaired)
    plan: SequentialPlan | None  # the design at this sigma; None when it cannot be simulated


@dataclass(frozen=True)
class SequentialAnalysis:
    """Every comparison's sequential state and the design they share."""

    spending: str
    futility: bool
    max_seeds: int
    max_seeds_source: str  # "given" or "table" (the most runs of any setting)
    alpha: float  # per comparison: alpha / m
    schedule: tuple[int, ...]  # the baseline's runs per setting after each wave
    comparisons: tuple[SequentialComparison, ...]
    notes: tuple[str, ...]


def _by_wave(runs: Sequence[Run], waves: list[int]) -> list[np.ndarray]:
    return [
        np.array([r.value for r in runs if r.wave == w and not r.failed], dtype=np.float64)
        for w in waves
    ]


def _paired_waves(a: Sequence[Run], b: Sequence[Run], waves: list[int]) -> list[np.ndarray]:
    """Per-replicate differences a - b, each in the later wave of its two runs."""
    bmap = {r.replicate: r for r in b if r.replicate is not None and not r.failed}
    out: dict[int, list[float]] = {w: [] for w in waves}
    for r in sorted(a, key=lambda r: r.replicate if r.replicate is not None else -1):
        other = bmap.get(r.replicate)
        if r.replicate is None or r.failed or other is None:
            continue
        out[max(r.wave or 0, other.wave or 0)].append(r.value - other.value)
    return [np.array(out[w], dtype=np.float64) for w in waves]


def _plan(
    schedule: tuple[int, ...], sigma: float, design: SequentialDesign, paired: bool
) -> SequentialPlan | None:
    if not (math.isfinite(sigma) and sigma > 0) or schedule[0] < 2:
        return None
    return plan_sequential(
        design.effect_size,
        sigma,
        schedule,
        alpha=design.alpha,
        spending=design.spending,
        futility=design.futility,
        paired=paired,
        sims=PLAN_SIMS,
    )


def sequential_analysis(
    mains: Mapping[str, list[Run]],
    labels: list[str],
    baseline: str,
    *,
    alpha: float,
    effect_size: float,
    paired: bool,
    max_seeds: int | None = None,
    spending: Spending | None = None,
    futility: bool = False,
) -> SequentialAnalysis:
    """Each setting of ``labels`` against ``baseline`` over the waves of its runs (``mains``:
    each setting's runs, every one with a ``wave``). Raises ``ValueError`` when ``max_seeds``
    is below the runs a setting has."""
    spending = spending or Spending()
    most = max(len(mains[s]) for s in labels)
    if max_seeds is not None and max_seeds < most:
        raise ValueError(f"--max-seeds {max_seeds} is below the {most} runs a setting has")
    source = "table" if max_seeds is None else "given"
    max_seeds = most if max_seeds is None else max_seeds
    others = [s for s in labels if s != baseline]
    m = max(len(others), 1)
    design = SequentialDesign(max_seeds, effect_size, alpha / m, spending, futility)
    waves = sorted({r.wave for s in labels for r in mains[s] if r.wave is not None})
    base_counts = np.cumsum([sum(r.wave == w for r in mains[baseline]) for w in waves])
    schedule = tuple(int(n) for n in base_counts if n > 0)
    schedule = tuple(dict.fromkeys(schedule))  # a wave without baseline runs adds no look
    plan_schedule = schedule + ((max_seeds,) if schedule[-1] < max_seeds else ())
    notes: list[str] = []
    if source == "table":
        notes.append(
            f"max seeds per setting taken from the table ({max_seeds}); give the study's "
            "(--max-seeds) if it planned more, or the early boundaries differ from the study's"
        )
    out = []
    for s in others:
        a_runs, b_runs = mains[s], mains[baseline]
        final = len(a_runs) >= max_seeds
        if paired:
            diffs = _paired_waves(a_runs, b_runs, waves)
            result = decide(diffs, design=design, final=final, wave_numbers=waves)
            used = np.concatenate(diffs[: _used_waves(result, waves)])
            sigma = float(np.std(used, ddof=1)) if used.size >= 2 else math.nan
        else:
            wa, wb = _by_wave(a_runs, waves), _by_wave(b_runs, waves)
            result = decide(wa, wb, design=design, final=final, wave_numbers=waves)
            k = _used_waves(result, waves)
            sigma = pooled_sigma([np.concatenate(wa[:k]), np.concatenate(wb[:k])])[0]
        plan = _plan(plan_schedule, sigma, design, paired)
        out.append(SequentialComparison(s, baseline, result, sigma, plan))
    return SequentialAnalysis(
        spending=spending.name,
        futility=futility,
        max_seeds=max_seeds,
        max_seeds_source=source,
        alpha=alpha / m,
        schedule=schedule,
        comparisons=tuple(out),
        notes=tuple(notes),
    )


def _used_waves(result: SequentialResult, waves: list[int]) -> int:
    """How many of ``waves`` the result's looks rest on (all of them while it is open)."""
    if not result.looks:
        return len(waves)
    return waves.index(result.looks[-1].wave) + 1

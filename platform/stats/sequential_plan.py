"""What a sequential design costs and delivers, by simulation: error rates, power, average
seeds per setting, and the fixed design with the same power.

``outcomes`` applies the rules of ``sequential.decide`` to S whole studies at once (numpy over
(S, max_seeds) values): the same levels, boundaries, futility and verdict order
(``tests/platform/stats/test_sequential.py`` checks they agree study by study). ``simulate``
draws normal seed effects for it. Paired: ``sigma`` is the std of the per-replicate
differences A - B. Unpaired: each setting's seed std (``sigma_b`` for the baseline, default
``sigma``), Welch at every look.

``plan_sequential`` simulates the design at a true difference of 0 and of ``effect_size`` and
compares its average seeds per setting with ``power.seeds_per_arm``: the fixed design that has
the sequential design's power at ``effect_size`` (exact non-central t). Monte Carlo standard
errors are ``sqrt(p (1 - p) / sims)`` for rates and ``std / sqrt(sims)`` for seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sparse_rcnn.platform.errors import InputError
from sparse_rcnn.platform.stats.power import seeds_per_arm
from sparse_rcnn.platform.stats.sequential import (
    FUTILITY_POWER,
    OBRIEN_FLEMING,
    VERDICTS,
    SequentialDesign,
    conditional_power,
    first_stop,
    look_crossings,
)
from sparse_rcnn.platform.stats.sequential_levels import nominal_levels
from sparse_rcnn.platform.stats.spending import Spending


@dataclass(frozen=True)
class SimulatedStudies:
    """Outcome of S simulated sequential studies (metric units)."""

    verdict: np.ndarray  # (S,) index into sequential.VERDICTS
    seeds: np.ndarray  # (S,) seeds per setting when the study stopped
    rci_low: np.ndarray  # (S,) repeated (1 - alpha) interval at the stopping look
    rci_high: np.ndarray

    @property
    def sims(self) -> int:
        return int(self.verdict.size)

    def rate(self, verdict: str) -> float:
        return float(np.mean(self.verdict == VERDICTS.index(verdict)))

    def rate_se(self, verdict: str) -> float:
        p = self.rate(verdict)
        return math.sqrt(p * (1.0 - p) / self.sims)

    @property
    def mean_seeds(self) -> float:
        return float(np.mean(self.seeds))

    @property
    def mean_seeds_se(self) -> float:
        return float(np.std(self.seeds, ddof=1) / math.sqrt(self.sims))


def _check_schedule(schedule: Sequence[int], max_seeds: int) -> np.ndarray:
    n = np.asarray(schedule, dtype=np.int64)
    if n.ndim != 1 or n.size == 0 or n[0] < 2 or np.any(np.diff(n) <= 0) or n[-1] != max_seeds:
        raise InputError(
            f"schedule: cumulative seeds must increase from >= 2 to max_seeds {max_seeds}, got "
            f"{list(map(int, np.atleast_1d(n)))}"
        )
    return n


def _cumulative(x: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance (ddof 1) of the first n[k] columns of x: (S, K) each."""
    s1 = np.cumsum(x, axis=1)[:, n - 1]
    s2 = np.cumsum(x * x, axis=1)[:, n - 1]
    mean = s1 / n
    return mean, np.maximum(s2 - n * mean * mean, 0.0) / (n - 1)


def outcomes(
    design: SequentialDesign,
    schedule: Sequence[int],
    a: np.ndarray,
    b: np.ndarray | None = None,
) -> SimulatedStudies:
    """The sequential rules applied to S studies at once: ``a`` (S, max_seeds) holds each
    study's per-replicate differences in replicate order (``b`` None), or A's runs and ``b``
    the baseline's (Welch); looks after ``schedule[k]`` seeds, the last one final."""
    n = _check_schedule(schedule, design.max_seeds)
    if b is None:
        diff, var = _cumulative(a, n)
        se, df = np.sqrt(var / n), np.broadcast_to(n - 1.0, diff.shape)
        n_b = None
    else:
        (ma, va), (mb, vb) = _cumulative(a, n), _cumulative(b, n)
        ua, ub = va / n, vb / n
        diff, se = ma - mb, np.sqrt(ua + ub)
        with np.errstate(invalid="ignore", divide="ignore"):
            df = (ua + ub) ** 2 / (ua**2 / (n - 1) + ub**2 / (n - 1))
        n_b = tuple(int(x) for x in n)
    levels = nominal_levels(
        tuple(int(x) for x in n), n_b, design.max_seeds, design.alpha, design.spending, True
    )
    different, equivalent, c, _ = look_crossings(diff, se, df, levels, design.effect_size)
    futile = np.zeros_like(different)
    if design.futility:
        cp = conditional_power(diff, se, df, levels.fractions, design)
        futile = np.nan_to_num(cp, nan=1.0) < FUTILITY_POWER
        futile[:, -1] = False
    code, look = first_stop(different, equivalent, futile, final=True)
    rows = np.arange(code.size)
    d, half = diff[rows, look], c[rows, look] * se[rows, look]
    return SimulatedStudies(code, n[look], d - half, d + half)


def simulate(
    design: SequentialDesign,
    schedule: Sequence[int],
    true_diff: float,
    sigma: float,
    sims: int,
    rng: np.random.Generator,
    *,
    paired: bool = True,
    sigma_b: float | None = None,
) -> SimulatedStudies:
    """``outcomes`` of ``sims`` studies with normal seed effects and a true difference."""
    if not (math.isfinite(sigma) and sigma > 0):
        raise InputError(f"sigma: must be a positive number, got {sigma}")
    shape = (sims, design.max_seeds)
    a = true_diff + sigma * rng.standard_normal(shape)
    if paired:
        return outcomes(design, schedule, a)
    b = (sigma if sigma_b is None else sigma_b) * rng.standard_normal(shape)
    return outcomes(design, schedule, a, b)


@dataclass(frozen=True)
class SequentialPlan:
    """A sequential design against the fixed design with the same power (seeds per setting)."""

    schedule: tuple[int, ...]  # cumulative seeds per setting at each look
    effect_size: float
    sigma: float
    alpha: float
    spending: str
    futility: bool
    paired: bool
    sims: int
    power: float  # P(different) at a true difference of effect_size
    power_se: float
    type_one: float  # P(different) at a true difference of 0
    type_one_se: float
    equivalent_null: float  # P(equivalent) at a true difference of 0
    expected_seeds_null: float
    expected_seeds_effect: float
    fixed_seeds: int | None  # fixed design with the same power (at most 1 - 1/sims)
    saving_null: float  # 1 - expected_seeds_null / fixed_seeds
    saving_effect: float  # 1 - expected_seeds_effect / fixed_seeds


def plan_sequential(
    effect_size: float,
    sigma: float,
    schedule: Sequence[int],
    *,
    alpha: float = 0.05,
    spending: Spending = OBRIEN_FLEMING,
    futility: bool = False,
    paired: bool = True,
    sims: int = 20_000,
    seed: int = 0,
) -> SequentialPlan:
    """Simulate the design with looks at cumulative seeds ``schedule`` (``sequential.
    wave_schedule(initial, step, max)``; the last entry is max_seeds) at true differences 0
    and ``effect_size``, ``sigma`` as in ``simulate``; ``alpha`` per comparison."""
    n = _check_schedule(schedule, int(schedule[-1]) if len(schedule) else 0)
    design = SequentialDesign(int(n[-1]), effect_size, alpha, spending, futility)
    if sims < 100:
        raise InputError(f"sims: need at least 100 simulated studies, got {sims}")
    rng = np.random.default_rng(seed)
    null = simulate(design, n, 0.0, sigma, sims, rng, paired=paired)
    alt = simulate(design, n, effect_size, sigma, sims, rng, paired=paired)
    power = alt.rate("different")
    fixed = None
    if power > alpha:
        # Every simulated study found the difference: match 1 - 1/sims, the resolution.
        target = min(power, 1.0 - 1.0 / sims)
        try:
            fixed = seeds_per_arm(effect_size, sigma, target, alpha, paired=paired)
        except ValueError:
            fixed = None
    return SequentialPlan(
        schedule=tuple(int(x) for x in n),
        effect_size=effect_size,
        sigma=sigma,
        alpha=alpha,
        spending=design.spending.name,
        futility=design.futility,
        paired=paired,
        sims=sims,
        power=power,
        power_se=alt.rate_se("different"),
        type_one=null.rate("different"),
        type_one_se=null.rate_se("different"),
        equivalent_null=null.rate("equivalent"),
        expected_seeds_null=null.mean_seeds,
        expected_seeds_effect=alt.mean_seeds,
        fixed_seeds=fixed,
        saving_null=1.0 - null.mean_seeds / fixed if fixed else math.nan,
        saving_effect=1.0 - alt.mean_seeds / fixed if fixed else math.nan,
    )

"""Seeds per arm for a two-sided two-sample t test, exact via the non-central t.

Units: ``effect`` and ``sigma`` are in the same metric units (e.g. AP points); ``sigma`` is the
seed-to-seed standard deviation of one setting, assumed equal in both arms. With n seeds per
arm, ``df = 2n - 2``, the standardized effect ``d = effect / sigma``, the non-centrality
``nc = d * sqrt(n / 2)`` and the critical value ``t_c = t.ppf(1 - alpha / 2, df)``:

    power(n) = nct.sf(t_c, df, nc) + nct.sf(t_c, df, -nc)

(the lower tail ``P(T < -t_c) = P(-T > t_c)`` written as an upper tail of the reflected
non-central t: ``nct.cdf(-t_c, df, nc)`` returns NaN once nc passes ~8, ``nct.sf`` stays finite
for every n up to ``MAX_SEEDS``). A paired design (common random numbers: replicate r of every
setting uses the same seeds) tests the mean of n per-replicate differences with a one-sample t
on ``df = n - 1`` and ``nc = effect / sigma_d * sqrt(n)``, where ``sigma_d`` is the std of the
differences; ``paired=True`` selects it everywhere below.

The normal approximation ``n ~ 2 (z_{1-alpha/2} + z_{power})^2 / d^2`` (15.7 / d^2 at alpha 0.05,
80% power) is given by ``normal_approx_seeds`` for comparison only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

MAX_SEEDS = 100_000


def power_two_sample(
    effect: float, sigma: float, n: int, alpha: float = 0.05, *, paired: bool = False
) -> float:
    """Power of the two-sided t test with n seeds per arm (formula in the module doc).

    ``n`` >= 2; ``effect`` may be negative (the test is symmetric). ``sigma`` > 0: the std of
    one setting's values, or with ``paired=True`` the std of the per-replicate differences.
    """
    if n < 2:
        raise ValueError(f"n: need at least 2 seeds per arm, got {n}")
    if not sigma > 0:
        raise ValueError(f"sigma: must be positive, got {sigma}")
    if paired:
        df, nc = n - 1, abs(effect) / sigma * math.sqrt(n)
    else:
        df, nc = 2 * n - 2, abs(effect) / sigma * math.sqrt(n / 2)
    t_c = stats.t.ppf(1.0 - alpha / 2.0, df)
    return float(stats.nct.sf(t_c, df, nc) + stats.nct.sf(t_c, df, -nc))


def seeds_per_arm(
    effect: float,
    sigma: float,
    power: float = 0.8,
    alpha: float = 0.05,
    *,
    paired: bool = False,
) -> int:
    """Smallest n >= 2 per arm with ``power_two_sample(effect, sigma, n, alpha) >= power``.

    Power increases with n, so a doubling search then bisection finds it. Raises
    ``ValueError`` when ``effect`` is 0 or more than ``MAX_SEEDS`` would be needed.
    """
    if effect == 0:
        raise ValueError("effect: a zero effect cannot be detected with any n")
    if not 0 < power < 1:
        raise ValueError(f"power: must be in (0, 1), got {power}")

    def enough(n: int) -> bool:
        return power_two_sample(effect, sigma, n, alpha, paired=paired) >= power

    if enough(2):
        return 2
    low, high = 2, 4
    while not enough(high):
        low, high = high, high * 2
        if high > MAX_SEEDS:
            raise ValueError(f"more than {MAX_SEEDS} seeds per arm needed")
    while high - low > 1:  # invariant: not enough(low), enough(high)
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


def minimum_detectable_effect(
    n: int, sigma: float = 1.0, power: float = 0.8, alpha: float = 0.05, *, paired: bool = False
) -> float:
    """Smallest |effect| detected with probability ``power`` at n seeds per arm.

    Solves ``power_two_sample(effect, sigma, n, alpha) = power`` for effect (Brent's method).
    With the default ``sigma = 1`` the result is in sigma units (2.02 for n = 5, 80% power).
    """
    if not 0 < power < 1:
        raise ValueError(f"power: must be in (0, 1), got {power}")
    if power <= alpha:
        raise ValueError("power: must exceed alpha (the power at effect 0)")

    def gap(effect: float) -> float:
        return power_two_sample(effect, sigma, n, alpha, paired=paired) - power

    high = sigma
    while gap(high) < 0:
        high *= 2
    return float(optimize.brentq(gap, 0.0, high, xtol=1e-10))


def normal_approx_seeds(
    effect: float, sigma: float, power: float = 0.8, alpha: float = 0.05
) -> float:
    """Normal-approximation seeds per arm ``2 (z_{1-alpha/2} + z_power)^2 sigma^2 / effect^2``.

    Not rounded; it underestimates the exact t answer by about 1-2 seeds at small n.
    """
    z = stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power)
    return float(2.0 * z**2 * sigma**2 / effect**2)


@dataclass(frozen=True)
class SeedPlan:
    """Seeds per arm to detect ``effect`` at ``alpha`` for one assumed ``sigma``."""

    effect: float
    sigma: float
    alpha: float
    n_power_80: int
    n_power_90: int


def plan_seeds(effect: float, sigmas: Sequence[float], alpha: float = 0.05) -> tuple[SeedPlan, ...]:
    """One ``SeedPlan`` per assumed sigma: seeds per arm at 80% and 90% power.

    For effect 0.3 AP and sigma 0.2 this gives 9 and 11 seeds per arm.
    """
    plans = []
    for sigma in sigmas:
        n80 = seeds_per_arm(effect, sigma, 0.8, alpha)
        plans.append(
            SeedPlan(
                effect=effect,
                sigma=float(sigma),
                alpha=alpha,
                n_power_80=n80,
                n_power_90=seeds_per_arm(effect, sigma, 0.9, alpha),
            )
        )
    return tuple(plans)


def mde_table(ns: Sequence[int], power: float = 0.8, alpha: float = 0.05) -> np.ndarray:
    """Minimum detectable effects in sigma units for each n in ``ns`` (array, same order)."""
    return np.array([minimum_detectable_effect(int(n), 1.0, power, alpha) for n in ns])

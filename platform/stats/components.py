"""Variance components of a one-source-at-a-time (``decompose``) design, and test-set noise.

Design: each group varies ONE randomness source while every other seed is fixed, e.g.
``{"init": [...], "data_order": [...], "augmentation": [...], "nondeterminism": [...]}``,
optionally with an ``"all"`` group where everything varies. Values are per-run metrics (AP
points). A source's variance component is the sample variance (ddof 1) of its group.

Training is chaotic: any single perturbation tends to reach the full run-to-run variance, so
the components need not add up to the total (interactions, shared GPU nondeterminism in every
group). ``Decomposition.note`` says so; read the components as "how much does this source alone
move the metric", not as a variance budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from sparse_rcnn.platform.stats.summary import Interval, finite_values

NOT_ADDITIVE_NOTE = (
    "components need not add up to the total variance: every group also carries shared "
    "nondeterminism and sources interact (chaotic training), so a sum above the total is "
    "expected; they are per-source sensitivities, not a variance budget"
)


@dataclass(frozen=True)
class VarianceComponent:
    """Sample variance of one group's runs with its chi-square interval.

    ``variance = s^2`` (ddof 1), ``std = s``; ``variance_ci`` is None and ``reason`` set when
    n < 2.
    """

    source: str
    n: int
    variance: float
    std: float
    variance_ci: Interval | None
    reason: str | None


@dataclass(frozen=True)
class Decomposition:
    """All sources' components, the optional total group, and the non-additivity note."""

    components: tuple[VarianceComponent, ...]
    total: VarianceComponent | None
    sum_of_components: float
    note: str


def variance_interval(variance: float, n: int, confidence: float = 0.95) -> Interval | None:
    """Chi-square interval for sigma^2 from a sample variance ``s^2`` of n normal values.

    ``[(n-1) s^2 / chi2.ppf(1 - a/2, n-1), (n-1) s^2 / chi2.ppf(a/2, n-1)]``,
    ``a = 1 - confidence``. None when n < 2.
    """
    if n < 2 or not np.isfinite(variance):
        return None
    alpha = 1.0 - confidence
    df = n - 1
    low = df * variance / stats.chi2.ppf(1.0 - alpha / 2.0, df)
    high = df * variance / stats.chi2.ppf(alpha / 2.0, df)
    return Interval(float(low), float(high), confidence)


def variance_component(
    source: str, values: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> VarianceComponent:
    """``VarianceComponent`` of one group; NaN values are excluded with a warning."""
    x = finite_values(values, name=source)
    n = int(x.size)
    if n < 2:
        return VarianceComponent(
            source,
            n,
            float("nan"),
            float("nan"),
            None,
            f"n = {n}: a variance needs at least 2 runs",
        )
    var = float(np.var(x, ddof=1))
    return VarianceComponent(
        source, n, var, float(np.sqrt(var)), variance_interval(var, n, confidence), None
    )


def decompose(
    groups: Mapping[str, Sequence[float]],
    *,
    total_key: str | None = "all",
    confidence: float = 0.95,
) -> Decomposition:
    """Per-source variance components of a one-source-at-a-time design.

    Every key of ``groups`` except ``total_key`` is a source; ``groups[total_key]`` (if present)
    is the all-sources-varied group, reported as ``total``. ``sum_of_components`` is the sum
    of the finite source variances, to set beside ``total.variance``; see ``note``.
    """
    components = tuple(
        variance_component(name, vals, confidence)
        for name, vals in groups.items()
        if name != total_key
    )
    total = None
    if total_key is not None and total_key in groups:
        total = variance_component(total_key, groups[total_key], confidence)
    finite = [c.variance for c in components if np.isfinite(c.variance)]
    return Decomposition(
        components=components,
        total=total,
        sum_of_components=float(np.sum(finite)) if finite else float("nan"),
        note=NOT_ADDITIVE_NOTE,
    )


@dataclass(frozen=True)
class NoiseRatio:
    """Test-set (image bootstrap) noise beside seed-to-seed noise, in metric units.

    ``mean_test_se``: mean over trials of the bootstrap SE; ``rms_test_se``:
    ``sqrt(mean(se^2))``; ``ratio = mean_test_se / seed_std``; ``seed_std_excess``:
    ``sqrt(max(0, seed_std^2 - rms_test_se^2))``, the seed spread left once the variance each
    trial's finite test set adds is taken out (NaN when ``seed_std`` is NaN).
    """

    n_trials: int
    mean_test_se: float
    rms_test_se: float
    seed_std: float
    ratio: float
    seed_std_excess: float


def noise_ratio(bootstrap_se: Sequence[float] | np.ndarray, seed_std: float) -> NoiseRatio:
    """Set the mean per-trial test-set SE beside the seed-to-seed std (formulas on NoiseRatio).

    ``bootstrap_se``: one bootstrap standard error of the metric per trial (NaN for failed
    trials, excluded with a warning). ``seed_std``: std (ddof 1) of the trials' metric.
    ``ratio`` is NaN when ``seed_std`` is 0 or NaN, or no SE is finite.
    """
    se = finite_values(bootstrap_se, name="bootstrap_se")
    if (se < 0).any():
        raise ValueError("bootstrap_se: standard errors must be non-negative")
    nan = float("nan")
    if se.size == 0:
        return NoiseRatio(0, nan, nan, float(seed_std), nan, nan)
    mean_se = float(np.mean(se))
    rms_se = float(np.sqrt(np.mean(se**2)))
    ok = np.isfinite(seed_std) and seed_std > 0
    ratio = mean_se / seed_std if ok else nan
    excess = float(np.sqrt(max(0.0, seed_std**2 - rms_se**2))) if np.isfinite(seed_std) else nan
    return NoiseRatio(int(se.size), mean_se, rms_se, float(seed_std), ratio, excess)

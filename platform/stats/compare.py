"""Comparing settings over seeds: Welch difference, Mann-Whitney, P(A > B), Hedges' g, Holm.

Inputs are 1-D sequences of per-seed metric values for setting A and setting B (independent
seeds; for paired designs use ``scipy.stats.ttest_rel`` directly). The sign convention is
always A minus B: a positive ``difference`` or ``hedges_g`` means A scored higher. NaN values
(failed trials) are excluded with a warning, as in ``summary``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from sparse_rcnn.platform.stats.summary import Interval, finite_values


@dataclass(frozen=True)
class Comparison:
    """A against B; see ``compare`` for every formula. NaN/None fields come with ``notes``."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    difference: float
    difference_ci: Interval | None
    welch_p: float
    mann_whitney_p: float
    prob_improvement: float
    prob_improvement_ci: Interval | None
    hedges_g: float
    notes: tuple[str, ...]


def probability_of_improvement(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(A > B) = (1 / (n_a n_b)) * sum_ij [a_i > b_j] + 0.5 * [a_i == b_j].

    Equal to the Mann-Whitney U of A divided by ``n_a * n_b``. Vectorized over ``axis`` (so it
    can serve as a ``scipy.stats.bootstrap`` statistic); returns NaN for an empty arm.
    """
    a = np.moveaxis(np.asarray(a, dtype=np.float64), axis, -1)
    b = np.moveaxis(np.asarray(b, dtype=np.float64), axis, -1)
    if a.shape[-1] == 0 or b.shape[-1] == 0:
        return np.full(np.broadcast_shapes(a.shape[:-1], b.shape[:-1]), np.nan)
    diff = a[..., :, None] - b[..., None, :]
    return np.mean((diff > 0) + 0.5 * (diff == 0), axis=(-2, -1))


def hedges_g(a: np.ndarray, b: np.ndarray) -> float:
    """Bias-corrected standardized difference ``g = J(df) * (mean_a - mean_b) / s_pooled``.

    ``s_pooled = sqrt(((n_a-1) s_a^2 + (n_b-1) s_b^2) / df)``, ``df = n_a + n_b - 2``, and the
    exact correction ``J(df) = Gamma(df/2) / (sqrt(df/2) * Gamma((df-1)/2))`` (about
    ``1 - 3 / (4 df - 1)``). NaN when df < 2 or ``s_pooled`` is 0.
    """
    n_a, n_b = a.size, b.size
    df = n_a + n_b - 2
    if n_a < 1 or n_b < 1 or df < 2:
        return float("nan")
    ss = (n_a - 1) * (np.var(a, ddof=1) if n_a > 1 else 0.0)
    ss += (n_b - 1) * (np.var(b, ddof=1) if n_b > 1 else 0.0)
    s_pooled = float(np.sqrt(ss / df))
    if s_pooled == 0.0:
        return float("nan")
    j = float(np.exp(special.gammaln(df / 2) - special.gammaln((df - 1) / 2)) / np.sqrt(df / 2))
    return j * float(np.mean(a) - np.mean(b)) / s_pooled


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error control), in input order.

    With the m p-values sorted ascending ``p_(1) <= ... <= p_(m)``:
    ``adj_(i) = min(1, max_{j <= i} (m - j + 1) * p_(j))``. Reject H_(i) at level alpha iff
    ``adj_(i) <= alpha``. NaN inputs stay NaN and do not count towards m.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def compare(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> Comparison:
    """Compare setting A with setting B (A minus B).

    - ``difference = mean_a - mean_b`` with the Welch interval and two-sided p of
      ``scipy.stats.ttest_ind(a, b, equal_var=False)``: ``t = d / sqrt(s_a^2/n_a + s_b^2/n_b)``
      on Welch-Satterthwaite df (needs n >= 2 per arm and some spread);
    - ``mann_whitney_p``: two-sided exact p of ``mannwhitneyu(a, b, method="exact")``;
    - ``prob_improvement``: P(A > B), ties 1/2, with a percentile bootstrap interval resampling
      each arm independently (needs n >= 2 per arm);
    - ``hedges_g``: see ``hedges_g``.
    """
    x = finite_values(a, name="a")
    y = finite_values(b, name="b")
    n_a, n_b = int(x.size), int(y.size)
    nan = float("nan")
    notes: list[str] = []
    mean_a = float(np.mean(x)) if n_a else nan
    mean_b = float(np.mean(y)) if n_b else nan
    diff_ci: Interval | None = None
    welch_p = mw_p = nan
    if n_a < 2 or n_b < 2:
        notes.append(f"n_a = {n_a}, n_b = {n_b}: Welch and bootstrap need 2 values per arm")
    elif np.ptp(x) == 0.0 and np.ptp(y) == 0.0:
        notes.append("both arms have zero spread: Welch test undefined")
    else:
        res = stats.ttest_ind(x, y, equal_var=False)
        ci = res.confidence_interval(confidence)
        diff_ci = Interval(float(ci.low), float(ci.high), confidence)
        welch_p = float(res.pvalue)
    if n_a and n_b:
        mw_p = float(stats.mannwhitneyu(x, y, method="exact").pvalue)
    pi = float(probability_of_improvement(x, y))
    pi_ci: Interval | None = None
    if n_a >= 2 and n_b >= 2:
        boot = stats.bootstrap(
            (x, y),
            probability_of_improvement,
            confidence_level=confidence,
            n_resamples=n_resamples,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
        c = boot.confidence_interval
        pi_ci = Interval(float(c.low), float(c.high), confidence)
    g = hedges_g(x, y)
    if n_a + n_b >= 4 and np.isnan(g):
        notes.append("pooled std is 0: Hedges' g undefined")
    return Comparison(
        n_a=n_a,
        n_b=n_b,
        mean_a=mean_a,
        mean_b=mean_b,
        difference=mean_a - mean_b,
        difference_ci=diff_ci,
        welch_p=welch_p,
        mann_whitney_p=mw_p,
        prob_improvement=pi,
        prob_improvement_ci=pi_ci,
        hedges_g=g,
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class BaselineComparison:
    """One setting against the baseline, with Holm-adjusted p-values across all settings."""

    setting: str
    comparison: Comparison
    welch_p_holm: float
    mann_whitney_p_holm: float


def compare_to_baseline(
    settings: Mapping[str, Sequence[float]],
    baseline: str,
    *,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> tuple[BaselineComparison, ...]:
    """Compare every setting (A) with ``settings[baseline]`` (B); Holm-adjust across them.

    The m = len(settings) - 1 Welch p-values are adjusted together with ``holm``, and so are
    the m Mann-Whitney p-values. Order follows ``settings``.
    """
    if baseline not in settings:
        raise KeyError(f"baseline {baseline!r} is not one of {sorted(settings)}")
    names = [k for k in settings if k != baseline]
    comps = [
        compare(
            settings[k],
            settings[baseline],
            confidence=confidence,
            n_resamples=n_resamples,
            seed=seed,
        )
        for k in names
    ]
    welch = holm([c.welch_p for c in comps])
    mw = holm([c.mann_whitney_p for c in comps])
    return tuple(
        BaselineComparison(k, c, float(w), float(u))
        for k, c, w, u in zip(names, comps, welch, mw, strict=True)
    )

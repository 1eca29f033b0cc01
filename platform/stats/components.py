"""Variance components of a one-source-at-a-time (``decompose``) design, and test-set noise.

Design: group k varies ONE randomness source (init, data_order, augmentation) while the other
seeds stay fixed; the ``nondeterminism`` group repeats identical seeds; an optional ``all`` group
varies everything. Every run also carries run-to-run nondeterminism, so with independent
effects ``E[s_k^2] = sigma_k^2 + sigma_nd^2``: a group's sample variance is NOT its source's
component. The component is

    sigma_k^2 = max(0, s_k^2 - s_nd^2)

with the modified large-sample (MLS) interval for a difference of two variances (Ting, Burdick,
Graybill, Jeyaratnam & Lu 1990; Burdick & Graybill 1992), which covered the true component at
its nominal level in the calibration suite where a chi-square interval on s_k^2 covered 28-54 %
of small components. The nondeterminism component is s_nd^2 with its chi-square interval.

Training is chaotic: sources interact, so the components need not add up. Under additivity the
all-sources variance would be ``sum_k s_k^2 - (K - 1) s_nd^2`` (K source groups besides
nondeterminism, each holding one copy of sigma_nd^2): ``additive_total`` gives it, labelled as
such, for planning when a study has no ``all`` group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

from sparse_rcnn.platform.stats.summary import Interval

NONDETERMINISM = "nondeterminism"
ALL = "all"


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


def mls_difference_interval(
    s1: float | np.ndarray,
    nu1: int,
    s2: float | np.ndarray,
    nu2: int,
    confidence: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """MLS interval for ``sigma_1^2 - sigma_2^2`` from sample variances ``s1``, ``s2``
    (``s_i`` are VARIANCES) on ``nu1``, ``nu2`` degrees of freedom; vectorized.

    With ``a = 1 - confidence``: ``G_i = 1 - nu_i / chi2_{1-a/2, nu_i}``,
    ``H_i = nu_i / chi2_{a/2, nu_i} - 1``, ``F_u = F_{1-a/2; nu1, nu2}``,
    ``F_l = F_{a/2; nu1, nu2}``, ``G12 = ((F_u - 1)^2 - G1^2 F_u^2 - H2^2) / F_u``,
    ``H12 = ((1 - F_l)^2 - H1^2 F_l^2 - G2^2) / F_l``, ``d = s1 - s2``:

        L = d - sqrt(G1^2 s1^2 + H2^2 s2^2 + G12 s1 s2)
        U = d + sqrt(H1^2 s1^2 + G2^2 s2^2 + H12 s1 s2)

    Not truncated (callers truncate at 0).
    """
    a = 1.0 - confidence
    s1 = np.asarray(s1, dtype=np.float64)
    s2 = np.asarray(s2, dtype=np.float64)
    g1 = 1 - nu1 / stats.chi2.ppf(1 - a / 2, nu1)
    g2 = 1 - nu2 / stats.chi2.ppf(1 - a / 2, nu2)
    h1 = nu1 / stats.chi2.ppf(a / 2, nu1) - 1
    h2 = nu2 / stats.chi2.ppf(a / 2, nu2) - 1
    f_u = stats.f.ppf(1 - a / 2, nu1, nu2)
    f_l = stats.f.ppf(a / 2, nu1, nu2)
    g12 = ((f_u - 1) ** 2 - g1**2 * f_u**2 - h2**2) / f_u
    h12 = ((1 - f_l) ** 2 - h1**2 * f_l**2 - g2**2) / f_l
    d = s1 - s2
    low = d - np.sqrt(np.maximum(0.0, g1**2 * s1**2 + h2**2 * s2**2 + g12 * s1 * s2))
    high = d + np.sqrt(np.maximum(0.0, h1**2 * s1**2 + g2**2 * s2**2 + h12 * s1 * s2))
    return low, high


@dataclass(frozen=True)
class VarianceComponent:
    """One source's variance component (metric units squared), truncated at 0.

    ``group_variance`` is the raw sample variance s^2 of the source's group (n runs);
    ``variance`` is the component: ``max(0, s^2 - s_nd^2)`` for a seed source when a
    nondeterminism group exists, else s^2. ``method`` names the interval: ``mls`` (difference
    of variances), ``chi2`` (a variance), ``chi2-with-noise-floor`` (a seed source without a
    nondeterminism group: its interval also contains run-to-run noise), or ``additive`` (the
    all-sources total assembled from the groups under additivity; no interval).
    """

    source: str
    n: int
    group_variance: float
    variance: float
    ci: Interval | None
    method: str
    note: str | None


@dataclass(frozen=True)
class Decomposition:
    """All components of one setting; ``dominant`` is set only when the intervals support it."""

    components: tuple[VarianceComponent, ...]
    total: VarianceComponent | None
    dominant: str | None
    note: str


def _finite(values: np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return x[np.isfinite(x)]


def _clip(ci: Interval | None) -> Interval | None:
    if ci is None:
        return None
    return Interval(max(0.0, ci.low), max(0.0, ci.high), ci.confidence)


def decompose(groups: Mapping[str, np.ndarray], *, confidence: float = 0.95) -> Decomposition:
    """Components of every group in ``groups`` (source name -> that group's values).

    Seed sources (init, data_order, augmentation) get ``max(0, s_k^2 - s_nd^2)`` with the MLS
    interval when a ``nondeterminism`` group of n >= 2 exists; the nondeterminism and ``all``
    groups get s^2 with a chi-square interval. Without an ``all`` group, ``total`` is the
    additive estimate ``sum_k s_k^2 - (K - 1) s_nd^2`` (no interval; labelled). A source is
    ``dominant`` only when its interval's lower end exceeds every other source's upper end.
    """
    data = {k: _finite(v) for k, v in groups.items()}
    nd = data.get(NONDETERMINISM)
    nd_ok = nd is not None and nd.size >= 2
    s_nd = float(np.var(nd, ddof=1)) if nd_ok else math.nan
    comps: list[VarianceComponent] = []
    for source, x in data.items():
        if source == ALL:
            continue
        n = int(x.size)
        if n < 2:
            comps.append(
                VarianceComponent(source, n, math.nan, math.nan, None, "none", f"n = {n} < 2")
            )
            continue
        s2 = float(np.var(x, ddof=1))
        if source == NONDETERMINISM:
            comps.append(
                VarianceComponent(
                    source, n, s2, s2, variance_interval(s2, n, confidence), "chi2", None
                )
            )
        elif nd_ok:
            lo, hi = mls_difference_interval(s2, n - 1, s_nd, nd.size - 1, confidence)
            ci = _clip(Interval(float(lo), float(hi), confidence))
            comps.append(VarianceComponent(source, n, s2, max(0.0, s2 - s_nd), ci, "mls", None))
        else:
            comps.append(
                VarianceComponent(
                    source,
                    n,
                    s2,
                    s2,
                    variance_interval(s2, n, confidence),
                    "chi2-with-noise-floor",
                    "no nondeterminism group: includes run-to-run noise",
                )
            )
    total = None
    if ALL in data and data[ALL].size >= 2:
        x = data[ALL]
        s2 = float(np.var(x, ddof=1))
        total = VarianceComponent(
            ALL, int(x.size), s2, s2, variance_interval(s2, x.size, confidence), "chi2", None
        )
    else:
        total = additive_total(comps)
    return Decomposition(tuple(comps), total, dominant_source(comps), NOT_ADDITIVE_NOTE)


NOT_ADDITIVE_NOTE = (
    "each seed source's component is its group's variance minus the run-to-run "
    "(nondeterminism) variance that every run carries; training is chaotic and sources "
    "interact, so the components need not add up to the all-sources variance"
)


def additive_total(
    comps: list[VarianceComponent] | tuple[VarianceComponent, ...],
) -> VarianceComponent | None:
    """``sum_k s_k^2 - (K - 1) s_nd^2`` over the seed-source groups (K of them), i.e. the sum
    of the components plus one s_nd^2, under additivity; None without a nondeterminism group
    or without any seed source."""
    nd = [c for c in comps if c.source == NONDETERMINISM and math.isfinite(c.group_variance)]
    seeds = [c for c in comps if c.source != NONDETERMINISM and math.isfinite(c.group_variance)]
    if not nd or not seeds:
        return None
    k = len(seeds)
    value = sum(c.group_variance for c in seeds) - (k - 1) * nd[0].group_variance
    return VarianceComponent(
        ALL,
        sum(c.n for c in seeds) + nd[0].n,
        math.nan,
        max(0.0, value),
        None,
        "additive",
        "assembled from the source groups assuming additive effects (no `all` group)",
    )


def dominant_source(comps: list[VarianceComponent] | tuple[VarianceComponent, ...]) -> str | None:
    """The source whose interval's low end exceeds every other source's high end, or None."""
    with_ci = [c for c in comps if c.ci is not None]
    for c in with_ci:
        others = [o for o in with_ci if o is not c]
        if others and all(c.ci.low > o.ci.high for o in others):
            return c.source
    return None


@dataclass(frozen=True)
class ValidationSetShare:
    """How much of one setting's seed variance is specific to this validation set.

    ``seed_variance`` = s^2 over the setting's runs; ``set_specific`` = (1/2) mean_{i<j} v_ij,
    v_ij the paired image-bootstrap variance of AP_i - AP_j (shared image draws);
    ``distribution`` = max(0, seed_variance - set_specific), the seed variance that would
    remain on new images from the same distribution.
    """

    n: int
    seed_variance: float
    set_specific: float
    distribution: float


def validation_set_share(values: np.ndarray, replicates: np.ndarray) -> ValidationSetShare | None:
    """``ValidationSetShare`` of T runs: ``values`` (T,) their metric, ``replicates`` (T, B)
    their image-bootstrap replicates on shared draws (NaN replicates are ignored per pair).
    None with fewer than 2 runs."""
    t = values.size
    if t < 2:
        return None
    v = []
    for i in range(t):
        for j in range(i + 1, t):
            d = replicates[i] - replicates[j]
            d = d[np.isfinite(d)]
            if d.size >= 2:
                v.append(float(np.var(d, ddof=1)))
    if not v:
        return None
    seed_var = float(np.var(values, ddof=1))
    specific = 0.5 * float(np.mean(v))
    return ValidationSetShare(t, seed_var, specific, max(0.0, seed_var - specific))

"""Location and spread of one setting over seeds.

Input: a 1-D sequence of per-seed metric values (e.g. COCO AP in points, one per finished
trial). NaN marks a failed trial: it is counted in ``n_nan``, excluded with a
``warnings.warn`` naming how many, and never averaged. Small or degenerate samples (n = 0, 1,
identical values) give NaN/None fields with a reason in ``notes`` instead of raising.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_BOOTSTRAP_N = 8
"""Below this many values the bootstrap is anti-conservative (reference 2.1); use the t-interval."""


@dataclass(frozen=True)
class Interval:
    """A closed interval ``[low, high]`` at confidence level ``confidence``."""

    low: float
    high: float
    confidence: float

    @property
    def width(self) -> float:
        return self.high - self.low


@dataclass(frozen=True)
class SeedSummary:
    """Summary of one setting over seeds; see ``summarize`` for every formula.

    ``values`` are the finite values used (input order); ``n`` counts them and ``n_nan`` the
    excluded NaN values. Fields that cannot be computed are NaN (floats) or None (intervals),
    and ``notes`` says why.
    """

    values: tuple[float, ...]
    n: int
    n_nan: int
    mean: float
    std: float
    std_ci: Interval | None
    sem: float
    mean_ci: Interval | None
    bootstrap_ci: Interval | None
    minimum: float
    maximum: float
    range: float
    median: float
    iqm: float
    notes: tuple[str, ...]


def finite_values(values: Sequence[float] | np.ndarray, *, name: str = "values") -> np.ndarray:
    """Return the non-NaN entries of a 1-D sequence as float64, warning if any were dropped.

    A NaN is a failed trial's metric: it is excluded (never averaged) and the warning names how
    many of how many were excluded. Infinite values raise ``ValueError`` (they are a bug, not a
    failed trial).
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence, got shape {x.shape}")
    nan = np.isnan(x)
    if np.isinf(x).any():
        raise ValueError(f"{name}: infinite values are not a valid metric")
    n_nan = int(nan.sum())
    if n_nan:
        warnings.warn(
            f"{name}: excluded {n_nan} NaN value(s) of {x.size} (failed trials)",
            RuntimeWarning,
            stacklevel=2,
        )
    return x[~nan]


def sigma_interval(std: float, n: int, confidence: float = 0.95) -> Interval | None:
    """Chi-square confidence interval for sigma from a sample std ``s`` (ddof 1) of n values.

    ``[s * sqrt((n-1) / chi2.ppf(1 - a/2, n-1)), s * sqrt((n-1) / chi2.ppf(a/2, n-1))]`` with
    ``a = 1 - confidence``; assumes normal values. None when n < 2 or s is not finite.
    """
    if n < 2 or not np.isfinite(std):
        return None
    alpha = 1.0 - confidence
    df = n - 1
    low = std * np.sqrt(df / stats.chi2.ppf(1.0 - alpha / 2.0, df))
    high = std * np.sqrt(df / stats.chi2.ppf(alpha / 2.0, df))
    return Interval(float(low), float(high), confidence)


def t_interval(mean: float, sem: float, n: int, confidence: float = 0.95) -> Interval | None:
    """Student-t interval for the mean: ``mean -/+ t.ppf(1 - a/2, n-1) * sem``.

    ``sem = s / sqrt(n)``. None when n < 2. A zero ``sem`` (identical values) gives the
    zero-width interval ``[mean, mean]``.
    """
    if n < 2 or not np.isfinite(sem):
        return None
    half = stats.t.ppf(0.5 + confidence / 2.0, n - 1) * sem
    return Interval(float(mean - half), float(mean + half), confidence)


def interquartile_mean(x: np.ndarray) -> float:
    """IQM: the mean of the middle 50%, ``scipy.stats.trim_mean(x, 0.25)``; NaN when empty.

    trim_mean cuts ``int(0.25 * n)`` values from each end, so for n < 4 it is the plain mean.
    """
    if x.size == 0:
        return float("nan")
    return float(stats.trim_mean(x, 0.25))


def bootstrap_mean_interval(
    x: np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
    min_n: int = MIN_BOOTSTRAP_N,
) -> tuple[Interval | None, str | None]:
    """BCa bootstrap interval of the mean over seeds, or ``(None, reason)``.

    ``scipy.stats.bootstrap((x,), np.mean, method="BCa", n_resamples=..., rng=seed)``. Skipped
    when n < ``min_n`` (anti-conservative at small n) or when all values are identical (every
    resample has the same mean, BCa is undefined).
    """
    n = int(x.size)
    if n < min_n:
        return None, f"bootstrap skipped: n = {n} < {min_n}; use the t-interval"
    if np.ptp(x) == 0.0:
        return None, "bootstrap skipped: all values identical"
    res = stats.bootstrap(
        (x,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="BCa",
        rng=np.random.default_rng(seed),
    )
    ci = res.confidence_interval
    return Interval(float(ci.low), float(ci.high), confidence), None


def summarize(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
    min_bootstrap_n: int = MIN_BOOTSTRAP_N,
) -> SeedSummary:
    """Summarize one setting's per-seed values.

    With the finite values ``x_1..x_n``:

    - ``mean = sum(x) / n``; ``std = sqrt(sum((x - mean)^2) / (n - 1))`` (ddof 1);
    - ``std_ci``: chi-square interval for sigma (``sigma_interval``);
    - ``sem = std / sqrt(n)``; ``mean_ci``: t-interval ``mean -/+ t_{1-a/2, n-1} * sem``;
    - ``bootstrap_ci``: BCa bootstrap of the mean when n >= ``min_bootstrap_n``;
    - ``minimum``, ``maximum``, ``range = maximum - minimum``, ``median``,
      ``iqm = trim_mean(x, 0.25)``.

    Edge cases: n = 0 gives NaN everywhere; n = 1 gives the value as mean/min/max/median/IQM and
    NaN std/sem with None intervals; identical values give std 0 and zero-width intervals.
    """
    x = finite_values(values)
    n_nan = int(np.asarray(values, dtype=np.float64).size - x.size)
    n = int(x.size)
    nan = float("nan")
    notes: list[str] = []
    if n_nan:
        notes.append(f"{n_nan} NaN value(s) excluded (failed trials)")
    if n == 0:
        notes.append("no finite values: every statistic is undefined")
        return SeedSummary(
            (), 0, n_nan, nan, nan, None, nan, None, None, nan, nan, nan, nan, nan, tuple(notes)
        )
    mean = float(np.mean(x))
    if n < 2:
        notes.append("n = 1: std, sem and intervals need at least 2 values")
        std = sem = nan
    else:
        std = float(np.std(x, ddof=1))
        sem = std / float(np.sqrt(n))
        if std == 0.0:
            notes.append("all values identical: std 0, intervals have zero width")
    boot, reason = bootstrap_mean_interval(
        x, confidence=confidence, n_resamples=n_resamples, seed=seed, min_n=min_bootstrap_n
    )
    if reason is not None:
        notes.append(reason)
    return SeedSummary(
        values=tuple(float(v) for v in x),
        n=n,
        n_nan=n_nan,
        mean=mean,
        std=std,
        std_ci=sigma_interval(std, n, confidence),
        sem=sem,
        mean_ci=t_interval(mean, sem, n, confidence),
        bootstrap_ci=boot,
        minimum=float(np.min(x)),
        maximum=float(np.max(x)),
        range=float(np.ptp(x)),
        median=float(np.median(x)),
        iqm=interquartile_mean(x),
        notes=tuple(notes),
    )

"""Nominal levels of a group-sequential t test (paired) or Welch test (unpaired), calibrated by
error spending with the variance estimated at every look.

At look k a comparison rejects "no difference" when the two-sided p of its t statistic on its
own df is at most ``two_sided[k]``, and each of the two equivalence tests (two one-sided tests
at +/- the margin) rejects when its one-sided p is at most ``one_sided[k]``. The levels are
chosen look by look so that the probability of a first rejection at look k equals the spending
increment ``alpha(t_k) - alpha(t_{k-1})`` (``spending.Spending``) for the t statistics
themselves, not for a z statistic with known variance:

- Under the null the paired t path (T_1, ..., T_K) does not depend on sigma (normal
  differences), so its law is that of ``CALIBRATION_PATHS`` simulated paths of standard normal
  differences. Look 1 is exact: its level is the increment (the marginal p is uniform).
  At look k >= 2 the level is the p below which exactly ``floor(increment * M)`` of the paths
  that have not yet rejected would reject now, and never below the increment itself (a first
  rejection at look k needs p_k <= level, so the increment is a valid level whatever the
  earlier looks did). The spent alpha is then exact up to Monte Carlo error ~sqrt(alpha / M)
  (5e-4 at alpha 0.05, M = 200,000).
- Welch's statistic is only nearly pivotal: with 3 seeds per arm the fixed Welch test rejects
  3.4 % at equal variances and 5.5-5.7 % at variance ratios 16-100 (alpha 0.05), and levels
  calibrated at equal variances spent up to 5.5 %. So Welch levels are calibrated at each of
  ``VARIANCE_RATIOS`` and the smallest wins, look by look, with no floor (its p is not exactly
  uniform); the tests check variance ratios 1 and 100.
- The one-sided levels are calibrated the same way on the upper tail: at a true difference of
  -margin the lower equivalence statistic ``(diff + margin) / se`` is a central t path.

Why not convert the z boundaries of ``spending`` to t quantiles (the "significance level"
approach)? With 3 initial seeds it rejected 5.5 % (O'Brien-Fleming) and 5.7 % (Pocock) of
200,000 null studies at alpha 0.05 (initial 3, step 2, max 20), and up to 6.2 % with 2.

The simulated paths are drawn column by column from fixed seeds ``(CALIBRATION_SEED, arm,
replicate)``, so the levels of looks 1..k do not change when look k + 1 is added: a driver that
calls after every wave sees the same earlier boundaries. Results are cached per design.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats

from sparse_rcnn.platform.errors import InputError
from sparse_rcnn.platform.stats.spending import Spending, check_fractions

CALIBRATION_PATHS = 200_000
CALIBRATION_SEED = 20_251_126
# Welch: variance ratios (baseline / A) the levels must hold at; the smallest level wins.
VARIANCE_RATIOS = (1 / 16, 1 / 4, 1.0, 4.0, 16.0)


@dataclass(frozen=True)
class Levels:
    """Per-look nominal levels (K,) and the information fractions they were spent at."""

    fractions: np.ndarray  # t_k in (0, 1]; 1 at a final look
    spent: np.ndarray  # cumulative alpha spent after look k (two-sided test)
    two_sided: np.ndarray  # reject "no difference" when the two-sided p <= this
    one_sided: np.ndarray  # each equivalence test rejects when its one-sided p <= this


def fractions_for(
    n_a: tuple[int, ...], n_b: tuple[int, ...] | None, max_seeds: int, final: bool
) -> np.ndarray:
    """Information fractions: ``n_k / max_seeds`` (paired); ``h_k / (max_seeds / 2)`` with
    ``h = n_a n_b / (n_a + n_b)`` (unpaired, equal to n_k / max with equal arms); the last
    look gets 1 when ``final`` (all remaining alpha is spent there)."""
    a = np.asarray(n_a, dtype=np.float64)
    if n_b is None:
        t = a / max_seeds
    else:
        b = np.asarray(n_b, dtype=np.float64)
        t = (a * b / (a + b)) / (max_seeds / 2.0)
    t = np.minimum(t, 1.0)
    if final:
        t[-1] = 1.0
    return t


def nominal_levels(
    n_a: tuple[int, ...],
    n_b: tuple[int, ...] | None,
    max_seeds: int,
    alpha: float,
    spending: Spending,
    final: bool,
) -> Levels:
    """The levels for looks with ``n_a[k]`` pairs (``n_b`` None: paired) or ``n_a[k]``,
    ``n_b[k]`` runs per arm (Welch), cumulative and increasing in information.

    Raises ``InputError`` when a look has fewer than 2 values per arm, more than
    ``max_seeds``, or no more information than the look before.
    """
    na = tuple(int(x) for x in n_a)
    nb = None if n_b is None else tuple(int(x) for x in n_b)
    for name, ns in (("n_a", na), ("n_b", nb)):
        if ns is None:
            continue
        if not ns or min(ns) < 2:
            raise InputError(f"{name}: every look needs at least 2 values per arm, got {list(ns)}")
        if max(ns) > max_seeds:
            raise InputError(f"{name}: {max(ns)} seeds exceed max_seeds {max_seeds}")
    if nb is not None and len(nb) != len(na):
        raise InputError(f"n_a and n_b: {len(na)} vs {len(nb)} looks")
    t = check_fractions(fractions_for(na, nb, max_seeds, final))
    return _levels(na, nb, tuple(t.tolist()), float(alpha), spending)


@lru_cache(maxsize=256)
def _levels(
    na: tuple[int, ...], nb: tuple[int, ...] | None, t: tuple[float, ...], alpha: float,
    spending: Spending,
) -> Levels:  # fmt: skip
    frac = np.array(t)
    inc = spending.increments(frac, alpha)
    # Resume from the longest calibrated prefix of these looks (a driver adds one per wave).
    key = (nb is None, alpha, spending)
    start, state = 0, None
    for k in range(len(na), 0, -1):
        state = _STATES.get((*key, na[:k], nb and nb[:k], t[:k]))
        if state is not None:
            start, state = k, state.copy()
            break
    state = state or _Calibration(paired=nb is None)
    for k in range(start, len(na)):
        state.add_look(na[k], None if nb is None else nb[k], float(inc[k]))
        if k >= len(na) - 2:  # the next call extends the last look, or replaces a final one
            _STATES[(*key, na[: k + 1], nb and nb[: k + 1], t[: k + 1])] = state.copy()
    while len(_STATES) > _STATES_KEPT:
        _STATES.popitem(last=False)
    spent = np.cumsum(inc)
    two, one = np.array(state.two), np.array(state.one)
    for arr in (frac, spent, two, one):
        arr.setflags(write=False)
    return Levels(frac, spent, two, one)


_STATES: OrderedDict[tuple, _Calibration] = OrderedDict()
_STATES_KEPT = 8  # each holds ~10 MB of simulated sums


class _Calibration:
    """The simulated null paths after some looks: each arm's running sums, which paths have
    not yet rejected (per scenario: the paired t, or Welch at each of ``VARIANCE_RATIOS``,
    baseline variance / A's), and the levels chosen so far."""

    def __init__(self, paired: bool) -> None:
        self.paired = paired
        m, scenarios = CALIBRATION_PATHS, 1 if paired else len(VARIANCE_RATIOS)
        self.sums = np.zeros((2, m))
        self.squares = np.zeros((2, m))
        self.done = [0, 0]
        self.alive2 = np.ones((scenarios, m), dtype=bool)
        self.alive1 = np.ones((scenarios, m), dtype=bool)
        self.two: list[float] = []
        self.one: list[float] = []

    def copy(self) -> _Calibration:
        new = _Calibration.__new__(_Calibration)
        new.paired, new.done, new.two, new.one = self.paired, [*self.done], [*self.two], [*self.one]
        for name in ("sums", "squares", "alive2", "alive1"):
            setattr(new, name, getattr(self, name).copy())
        return new

    def _extend(self, arm: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance (ddof 1) of the arm's first n simulated values."""
        while self.done[arm] < n:
            seed = (CALIBRATION_SEED, arm, self.done[arm])
            x = np.random.default_rng(seed).standard_normal(CALIBRATION_PATHS)
            self.sums[arm] += x
            self.squares[arm] += x * x
            self.done[arm] += 1
        mean = self.sums[arm] / n
        return mean, np.maximum(self.squares[arm] - n * mean * mean, 0.0) / (n - 1)

    def _statistics(self, na: int, nb: int | None) -> list[tuple[np.ndarray, np.ndarray | float]]:
        ma, va = self._extend(0, na)
        if nb is None:
            return [(ma / np.sqrt(va / na), float(na - 1))]
        mb, vb = self._extend(1, nb)
        out = []
        for ratio in VARIANCE_RATIOS:
            ua, ub = va / na, ratio * vb / nb
            df = (ua + ub) ** 2 / (ua**2 / (na - 1) + ub**2 / (nb - 1))
            out.append(((ma - math.sqrt(ratio) * mb) / np.sqrt(ua + ub), df))
        return out

    def add_look(self, na: int, nb: int | None, increment: float) -> None:
        paths = self._statistics(na, nb)
        first = not self.two
        # One-sided p on T (upper tail); two-sided on |T| from the same tail areas.
        p1 = [stats.t.sf(stat, df) for stat, df in paths]
        p2 = [2.0 * np.where(stat > 0, q, 1.0 - q) for (stat, _), q in zip(paths, p1, strict=True)]
        self.two.append(_level(first, increment, p2, self.alive2, self.paired))
        self.one.append(_level(first, increment, p1, self.alive1, self.paired))


def _level(
    first: bool, increment: float, p: list[np.ndarray], alive: np.ndarray, exact: bool
) -> float:
    """The level for a look: the smallest over the scenarios of the p below which
    ``floor(increment * M)`` of the paths still alive would reject now (``increment`` itself
    at an exact first look, or when that count is 0; never below it for the paired t).
    Updates ``alive`` (scenarios, M) in place."""
    r = math.floor(increment * CALIBRATION_PATHS)
    level = increment
    if r >= 1 and not (exact and first):
        candidates = []
        for j, pj in enumerate(p):
            q = pj[alive[j]]
            if r < q.size:
                part = np.partition(q, (r - 1, r))  # NaN sorts last
                candidates.append(0.5 * (part[r - 1] + part[r]))
        level = min(candidates, default=1.0)
        if exact:
            level = max(level, increment)
    for j, pj in enumerate(p):
        alive[j] &= ~(pj <= level)  # NaN statistics never reject
    return float(level)

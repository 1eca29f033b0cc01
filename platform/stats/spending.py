"""Error spending for group-sequential tests: Lan-DeMets spending functions, and the boundaries
they give for a statistic with known variance (the z scale).

A spending function gives the type-I error spent by information fraction ``t`` in (0, 1]
(``t_k = n_k / n_max`` seeds per setting), rising from 0 to ``alpha`` at ``t = 1``:

- ``obrien_fleming``: ``alpha(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t))`` (Lan & DeMets 1983);
  almost nothing early (``4e-7`` at t = 0.15, alpha 0.05), nearly all of alpha at the end.
- ``pocock``: ``alpha(t) = alpha ln(1 + (e - 1) t)``; nearly constant boundaries.
- ``hsd``: ``alpha (1 - exp(-gamma t)) / (1 - exp(-gamma))`` (Hwang, Shih & DeCani 1990);
  gamma = -4 is close to O'Brien-Fleming, gamma = 1 to Pocock.

The same function serves a two-sided test (``sides=2``: reject when |Z_k| >= b_k) and a
one-sided one (``sides=1``: Z_k >= b_k), each with total level ``alpha``. Look k may use only
the fractions up to k, so boundaries hold for irregular, data-independent look times.

``z_boundaries``: the boundaries for Z_k ~ N(theta sqrt(t_k), 1) with independent increments
(corr(Z_j, Z_k) = sqrt(t_j / t_k)), found look by look so that the probability of first
crossing at look k under theta = 0 equals ``alpha(t_k) - alpha(t_{k-1})``, by the recursive
numerical integration of Armitage, McPherson & Rowe (1969) on a Simpson grid (Jennison &
Turnbull 2000, ch. 19). It reproduces the published one-sided 0.025 O'Brien-Fleming-type
values for 5 equal looks (4.877, 3.357, 2.680, 2.290, 2.031). With seeds the variance is
estimated from few runs, so the decisions use the t-scale levels of ``sequential_levels``;
the z boundaries are their large-sample limit and give the final boundary for conditional
power.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from sparse_rcnn.platform.errors import InputError

SPENDING_NAMES = ("obrien_fleming", "pocock", "hsd")
GRID_POINTS = 801  # Simpson points per look; crossing probabilities accurate to ~1e-9
_TAIL = 10.0  # grid half-width in standard deviations around the drift
_MAX_BOUNDARY = 40.0


@dataclass(frozen=True)
class Spending:
    """A spending function by name (``SPENDING_NAMES``); ``gamma`` is used by ``hsd`` only."""

    name: str = "obrien_fleming"
    gamma: float = -4.0

    def __post_init__(self) -> None:
        if self.name not in SPENDING_NAMES:
            raise InputError(f"spending: {self.name!r} is not one of {', '.join(SPENDING_NAMES)}")
        if self.name == "hsd" and (self.gamma == 0 or not math.isfinite(self.gamma)):
            raise InputError(f"spending gamma: must be finite and non-zero, got {self.gamma}")

    def spent(self, t: np.ndarray | float, alpha: float) -> np.ndarray:
        """Cumulative alpha spent at fractions ``t`` (clipped to [0, 1]); ``alpha`` at 1."""
        t = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
        if self.name == "obrien_fleming":
            z = stats.norm.isf(alpha / 2.0)
            with np.errstate(divide="ignore"):
                return np.where(t > 0, 2.0 * stats.norm.sf(z / np.sqrt(t)), 0.0)
        if self.name == "pocock":
            return alpha * np.log1p((math.e - 1.0) * t)
        g = self.gamma
        return alpha * (-np.expm1(-g * t)) / (-math.expm1(-g))

    def increments(self, fractions: np.ndarray, alpha: float) -> np.ndarray:
        """Alpha spent at each look: ``alpha(t_k) - alpha(t_{k-1})`` (``t_0 = 0``)."""
        return np.diff(self.spent(np.asarray(fractions), alpha), prepend=0.0)


def check_fractions(fractions: np.ndarray) -> np.ndarray:
    t = np.asarray(fractions, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise InputError("information fractions: need a non-empty 1-D sequence")
    if not (np.all(t > 0) and np.all(t <= 1) and np.all(np.diff(t) > 0)):
        raise InputError(f"information fractions must increase within (0, 1], got {t.tolist()}")
    return t


def _simpson(lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(lo, hi, GRID_POINTS)
    w = np.ones(GRID_POINTS)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return x, w * (x[1] - x[0]) / 3.0


class _Recursion:
    """The sub-density of Z_k on the continuation region, carried from look to look."""

    def __init__(self, theta: float, sides: int) -> None:
        self.theta, self.sides = theta, sides
        self.x: np.ndarray | None = None  # grid of Z_{k-1}
        self.mass: np.ndarray | None = None  # Simpson weight * density at the grid
        self.t_prev = 0.0

    def crossing(self, b: float, t: float) -> float:
        """P(no crossing before, Z_k >= b (or |Z_k| >= b)) at fraction t."""
        mu = self.theta * math.sqrt(t)
        if self.x is None:
            lower = stats.norm.cdf(-b - mu) if self.sides == 2 else 0.0
            return float(stats.norm.sf(b - mu) + lower)
        d = t - self.t_prev
        m = self.x * math.sqrt(self.t_prev) + self.theta * d  # mean of B_k given Z_{k-1}
        p = stats.norm.sf((b * math.sqrt(t) - m) / math.sqrt(d))
        if self.sides == 2:
            p = p + stats.norm.cdf((-b * math.sqrt(t) - m) / math.sqrt(d))
        return float(np.sum(self.mass * p))

    def advance(self, b: float, t: float) -> None:
        mu = self.theta * math.sqrt(t)
        hi = min(b, mu + _TAIL)
        lo = max(-b, mu - _TAIL) if self.sides == 2 else mu - _TAIL
        xn, wn = _simpson(lo, hi) if hi > lo else (np.zeros(1), np.zeros(1))
        if self.x is None:
            dens = stats.norm.pdf(xn - mu)
        else:
            d = t - self.t_prev
            # B_k = Z_k sqrt(t_k) = B_{k-1} + N(theta d, d): density of Z_k at xn.
            arg = (
                xn[None, :] * math.sqrt(t)
                - self.x[:, None] * math.sqrt(self.t_prev)
                - self.theta * d
            ) / math.sqrt(d)  # (G_prev, G)
            dens = self.mass @ stats.norm.pdf(arg) * math.sqrt(t / d)
        self.x, self.mass, self.t_prev = xn, wn * dens, t


def z_boundaries(
    fractions: np.ndarray, alpha: float, spending: Spending, sides: int = 2
) -> np.ndarray:
    """(K,) boundaries b_k in the z scale for looks at ``fractions`` (see the module doc).

    A look that spends less than 1e-15 gets ``inf`` (no crossing possible).
    """
    t = check_fractions(fractions)
    inc = spending.increments(t, alpha)
    rec = _Recursion(0.0, sides)
    out = np.empty(t.size)
    for k, (tk, ik) in enumerate(zip(t, inc, strict=True)):
        if ik <= 1e-15:
            b = math.inf
        else:
            b = optimize.brentq(lambda c, tk=tk, ik=ik: rec.crossing(c, tk) - ik,
                                0.0, _MAX_BOUNDARY, xtol=1e-10)  # fmt: skip
        out[k] = b
        rec.advance(min(b, _MAX_BOUNDARY), tk)
    return out


def crossing_probabilities(
    boundaries: np.ndarray, fractions: np.ndarray, theta: float = 0.0, sides: int = 2
) -> np.ndarray:
    """(K,) P(first crossing at look k) when E[Z_k] = ``theta`` sqrt(t_k); for sides = 2 a
    crossing of either boundary. Their sum at ``theta = 0`` is the spent alpha."""
    t = check_fractions(fractions)
    rec = _Recursion(theta, sides)
    out = np.empty(t.size)
    for k, (tk, b) in enumerate(zip(t, boundaries, strict=True)):
        b = min(float(b), _MAX_BOUNDARY)
        out[k] = rec.crossing(b, tk)
        rec.advance(b, tk)
    return out

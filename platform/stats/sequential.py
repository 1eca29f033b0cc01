"""Sequential (group-sequential) comparison of a setting with the baseline over waves of seeds.

After each wave the study driver calls ``decide`` with every wave so far (new per-replicate
differences A - B when paired by replicate, or new runs of A and B for Welch); the result says
whether this comparison is decided or needs the next wave:

- ``different``: |t_k| >= the look's boundary, i.e. the two-sided p of the paired t (or Welch)
  statistic on its own df is at most the look's nominal level. The levels spend ``alpha`` over
  the information fractions t_k = n_k / max_seeds with the chosen spending function
  (``spending``), calibrated for estimated variance (``sequential_levels``).
- ``equivalent``: both one-sided tests of |true difference| >= ``effect_size`` reject, each at
  its own spent level (two one-sided tests, each a sequential test at ``alpha``); the same as
  the repeated (1 - 2 alpha) interval lying inside (-effect_size, effect_size).
- ``open``: neither yet; schedule the next wave. At the final look (``max_seeds`` reached, or
  ``final=True``) all remaining alpha is spent, and a comparison that is neither different nor
  equivalent is ``undecided`` (the fixed-design verdict at the adjusted level). With
  ``futility`` a comparison also stops ``undecided`` when the conditional power to be found
  different at the final look, if the true difference were ``effect_size`` with sigma as
  estimated, falls below ``FUTILITY_POWER`` (non-binding: it never raises the type-I error).
  Different wins over equivalent at the same look (then a note says it is smaller than the
  effect of interest), as in the fixed analysis.

Intervals valid after stopping: the repeated confidence interval at look k,
``diff -/+ c_k se_k`` (c_k the look's t boundary), covers the true difference at every look
simultaneously with probability 1 - alpha, whatever the stopping rule; ``rci_equivalence``
(``diff -/+ e_k se_k``, one-sided boundaries) at 1 - 2 alpha. A single final wave reduces to
the fixed test: paired t (or Welch) at alpha and TOST at alpha.

``alpha`` is the level of one comparison: with m comparisons against the baseline pass
alpha / m (Bonferroni, like the fixed analysis's simultaneous intervals).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from sparse_rcnn.platform.errors import InputError
from sparse_rcnn.platform.stats import compare as cmp
from sparse_rcnn.platform.stats.sequential_levels import Levels, nominal_levels
from sparse_rcnn.platform.stats.spending import Spending
from sparse_rcnn.platform.stats.summary import Interval

FUTILITY_POWER = 0.10
OBRIEN_FLEMING = Spending("obrien_fleming")
VERDICTS = ("different", "equivalent", "undecided", "open")


@dataclass(frozen=True)
class SequentialDesign:
    """How one comparison is monitored (``alpha`` per comparison: alpha/m with m of them)."""

    max_seeds: int  # seeds per setting at the final look
    effect_size: float  # the equivalence margin and the effect of interest, metric units
    alpha: float = 0.05
    spending: Spending = OBRIEN_FLEMING
    futility: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.max_seeds, bool) or not isinstance(self.max_seeds, int):
            raise InputError(f"max_seeds: must be an integer, got {self.max_seeds!r}")
        if self.max_seeds < 2:
            raise InputError(f"max_seeds: must be at least 2, got {self.max_seeds}")
        if not (math.isfinite(self.effect_size) and self.effect_size > 0):
            raise InputError(f"effect_size: must be a positive number, got {self.effect_size}")
        if not 0 < self.alpha < 0.5:
            raise InputError(f"alpha: must be in (0, 0.5), got {self.alpha}")


def wave_schedule(initial: int, step: int, max_seeds: int) -> tuple[int, ...]:
    """Cumulative seeds per setting at each planned look: initial, initial + step, ..., max."""
    if initial < 2 or step < 1 or max_seeds < initial:
        raise InputError(
            f"seeds: need initial >= 2, step >= 1, max >= initial; got {initial}, {step}, "
            f"{max_seeds}"
        )
    return tuple(range(initial, max_seeds, step)) + (max_seeds,)


@dataclass(frozen=True)
class SequentialLook:
    """One analysed wave: the statistic, its boundaries and what crossed (metric units)."""

    wave: int  # 1-based wave number
    n_a: int  # pairs (paired) or runs of A
    n_b: int  # pairs (paired) or runs of the baseline
    information: float  # fraction t_k spent at; 1 at the final look
    alpha_spent: float  # cumulative alpha after this look
    diff: float
    se: float
    df: float
    statistic: float  # diff / se
    boundary: float  # |statistic| >= boundary: different (t on df)
    level: float  # its nominal two-sided level
    equivalence_boundary: float  # each one-sided t must pass this for equivalence
    equivalence_level: float
    rci: Interval | None  # repeated (1 - alpha) interval diff -/+ boundary * se
    rci_equivalence: Interval | None  # repeated (1 - 2 alpha) interval
    conditional_power: float  # NaN unless futility is on and the look is not final
    crossed: str | None  # "different" | "equivalent" | "futility" | None


@dataclass(frozen=True)
class SequentialResult:
    """The state of one comparison after the waves given to ``decide``."""

    design: str  # "paired" or "unpaired"
    verdict: str  # different | equivalent | undecided | open
    stopped_wave: int | None  # the wave that decided it; None while open
    final: bool  # the last look spent all remaining alpha
    looks: tuple[SequentialLook, ...]  # up to and including the deciding one
    diff: float  # at the last look (naive mean: biased away from 0 after an early stop)
    rci: Interval | None
    rci_equivalence: Interval | None
    seeds_used: int  # seeds per setting at the last look
    max_seeds: int
    alpha: float
    effect_size: float
    spending: str
    futility: bool
    notes: tuple[str, ...]


def _interval(center: float, half: float, level: float) -> Interval:
    return Interval(center - half, center + half, level)


def _values(waves: Sequence, name: str) -> list[np.ndarray]:
    out = []
    for k, w in enumerate(waves):
        x = np.asarray(w, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(x)):
            raise InputError(f"{name}: wave {k + 1} holds NaN or inf; leave failed runs out")
        out.append(x)
    return out


def look_crossings(
    diff: np.ndarray, se: np.ndarray, df: np.ndarray, levels: Levels, effect_size: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised over (S, K) looks: (different, equivalent, c, e) with the t boundaries c
    (two-sided) and e (one-sided) at each look's df. NaN statistics cross nothing."""
    c = stats.t.isf(levels.two_sided / 2.0, df)
    e = stats.t.isf(levels.one_sided, df)
    with np.errstate(invalid="ignore", divide="ignore"):
        different = np.abs(diff / se) >= c
        equivalent = (diff - e * se > -effect_size) & (diff + e * se < effect_size)
    return different, equivalent & np.isfinite(se) & (se > 0), c, e


def conditional_power(
    diff: np.ndarray,
    se: np.ndarray,
    df: np.ndarray,
    fractions: np.ndarray,
    design: SequentialDesign,
) -> np.ndarray:
    """P(different at t = 1 | data so far) if the true difference were ``effect_size`` in the
    observed direction, sigma as estimated: ``Phi((z_k sqrt(t) + theta (1 - t) - z_{1-a/2}) /
    sqrt(1 - t))`` with z_k the normal score of the t statistic's p and drift
    ``theta = effect_size / (se_k sqrt(t_k))``. The final z boundary is taken as the fixed
    one (O'Brien-Fleming's is a little higher), so this errs towards continuing."""
    t = np.minimum(fractions, 1.0 - 1e-12)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = stats.norm.isf(stats.t.sf(np.abs(diff / se), df))
        theta = design.effect_size / (se * np.sqrt(t))
        b = stats.norm.isf(design.alpha / 2.0)
        return stats.norm.cdf((z * np.sqrt(t) + theta * (1.0 - t) - b) / np.sqrt(1.0 - t))


def first_stop(
    different: np.ndarray, equivalent: np.ndarray, futile: np.ndarray, final: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(verdict index into VERDICTS, look index) of the first decisive look per row (S, K)."""
    stop = different | equivalent | futile
    k = different.shape[1]
    last = k - 1
    hit = stop.any(axis=1)
    look = np.where(hit, stop.argmax(axis=1), last)
    rows = np.arange(stop.shape[0])
    code = np.where(
        different[rows, look], 0, np.where(equivalent[rows, look], 1, np.where(hit, 2, 3))
    )
    if final:
        code = np.where(code == 3, 2, code)
    return code, look


def _look_stats(a: list[np.ndarray], b: list[np.ndarray] | None, confidence: float):
    """Cumulative (n_a, n_b, MeanDifference) at each wave that adds information."""
    out = []
    for k in range(len(a)):
        x = np.concatenate(a[: k + 1])
        if b is None:
            if x.size >= 2 and (not out or x.size > out[-1][1]):
                out.append((k + 1, x.size, x.size, cmp.paired_t(x, confidence)))
            continue
        y = np.concatenate(b[: k + 1])
        grew = not out or x.size > out[-1][1] or y.size > out[-1][2]
        if min(x.size, y.size) >= 2 and grew:
            out.append((k + 1, x.size, y.size, cmp.welch(x, y, confidence)))
    return out


def decide(
    a: Sequence[Sequence[float] | np.ndarray],
    b: Sequence[Sequence[float] | np.ndarray] | None = None,
    *,
    design: SequentialDesign,
    final: bool = False,
    wave_numbers: Sequence[int] | None = None,
) -> SequentialResult:
    """Analyse the waves so far (see the module doc) and return the comparison's state.

    ``a``: one array per wave. With ``b`` None, the per-replicate differences A - B of the
    pairs finished in that wave (paired); else A's new runs, and ``b`` the baseline's new runs
    of the same waves (Welch). Values in metric units; failed runs left out. A wave that adds
    nothing (or leaves fewer than 2 values per arm) is not a look. ``final``: no more waves
    will come (also implied when ``max_seeds`` is reached). ``wave_numbers``: how the looks
    name the waves (default 1, 2, ...).
    """
    if not len(a):
        raise InputError("waves: nothing to analyse (pass one array per wave)")
    if b is not None and len(b) != len(a):
        raise InputError(f"waves: {len(a)} for A but {len(b)} for the baseline; one per wave")
    numbers = list(range(1, len(a) + 1)) if wave_numbers is None else list(wave_numbers)
    if len(numbers) != len(a):
        raise InputError(f"wave_numbers: {len(numbers)} for {len(a)} waves")
    va = _values(a, "a" if b is not None else "differences")
    vb = None if b is None else _values(b, "b")
    looks_raw = _look_stats(va, vb, 1.0 - design.alpha)
    notes: list[str] = []
    n_a = sum(x.size for x in va)
    n_b = n_a if vb is None else sum(x.size for x in vb)
    if max(n_a, n_b) > design.max_seeds:
        raise InputError(
            f"waves: {max(n_a, n_b)} seeds per setting exceed max_seeds {design.max_seeds}"
        )
    is_final = final or min(n_a, n_b) >= design.max_seeds
    skipped = len(va) - len(looks_raw)
    if skipped:
        notes.append(f"{skipped} wave(s) added no usable values and were not looks")
    kind = "paired" if vb is None else "unpaired"
    if not looks_raw:
        notes.append("fewer than 2 values per setting: no look yet")
        verdict = "undecided" if is_final else "open"
        return SequentialResult(kind, verdict, numbers[-1] if is_final else None, is_final, (),
                                math.nan, None, None, max(n_a, n_b), design.max_seeds,
                                design.alpha, design.effect_size, design.spending.name,
                                design.futility, tuple(notes))  # fmt: skip
    levels = nominal_levels(
        tuple(r[1] for r in looks_raw),
        None if vb is None else tuple(r[2] for r in looks_raw),
        design.max_seeds,
        design.alpha,
        design.spending,
        is_final,
    )
    diff = np.array([[r[3].difference for r in looks_raw]])  # (1, K)
    se = np.array([[r[3].se for r in looks_raw]])
    df = np.array([[r[3].df for r in looks_raw]])
    different, equivalent, c, e = look_crossings(diff, se, df, levels, design.effect_size)
    cp = np.full(diff.shape, np.nan)
    if design.futility:
        cp = conditional_power(diff, se, df, levels.fractions, design)
        if is_final:
            cp[0, -1] = np.nan
    futile = np.nan_to_num(cp, nan=1.0) < FUTILITY_POWER
    code, stop = first_stop(different, equivalent, futile, is_final)
    verdict, last = VERDICTS[int(code[0])], int(stop[0])
    looks = []
    for k in range(last + 1):
        wave, na, nb, md = looks_raw[k]
        ck, ek, s = float(c[0, k]), float(e[0, k]), md.se
        ok = math.isfinite(s) and s > 0
        crossed = None
        if k == last and verdict in ("different", "equivalent"):
            crossed = verdict
        elif k == last and verdict == "undecided" and futile[0, k]:
            crossed = "futility"
        looks.append(
            SequentialLook(
                wave=numbers[wave - 1],
                n_a=na,
                n_b=nb,
                information=float(levels.fractions[k]),
                alpha_spent=float(levels.spent[k]),
                diff=md.difference,
                se=s,
                df=md.df,
                statistic=md.difference / s if ok else math.nan,
                boundary=ck,
                level=float(levels.two_sided[k]),
                equivalence_boundary=ek,
                equivalence_level=float(levels.one_sided[k]),
                rci=_interval(md.difference, ck * s, 1 - design.alpha) if ok else None,
                rci_equivalence=(
                    _interval(md.difference, ek * s, 1 - 2 * design.alpha) if ok else None
                ),
                conditional_power=float(cp[0, k]),
                crossed=crossed,
            )
        )
    end = looks[-1]
    if verdict == "different" and bool(equivalent[0, last]):
        notes.append(
            f"different from 0 but smaller than the effect of interest {design.effect_size:g}"
        )
    if last < len(looks_raw) - 1:
        notes.append(f"waves after wave {end.wave} are not used: the comparison stopped there")
    return SequentialResult(
        design=kind,
        verdict=verdict,
        stopped_wave=None if verdict == "open" else end.wave,
        final=is_final and last == len(looks_raw) - 1,
        looks=tuple(looks),
        diff=end.diff,
        rci=end.rci,
        rci_equivalence=end.rci_equivalence,
        seeds_used=max(end.n_a, end.n_b),
        max_seeds=design.max_seeds,
        alpha=design.alpha,
        effect_size=design.effect_size,
        spending=design.spending.name,
        futility=design.futility,
        notes=tuple(notes),
    )

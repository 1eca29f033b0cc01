"""Sequential comparisons: spending and boundaries, ``decide`` against the fixed test and the
vectorised rules, and the error rates by simulation with known truth.

Each rate check allows 3 Monte Carlo standard errors ``sqrt(p (1 - p) / S)`` for S simulated
studies (both sides' errors when a simulated plan is compared with a fresh simulation). Fixed
RNG seeds: the suite is deterministic. Design of the issue: waves of 3, then 2 more seeds per
setting, up to 20 (looks after 3, 5, ..., 19, 20 seeds), effect of interest 0.3, alpha 0.05.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sparse_rcnn.platform.errors import InputError
from sparse_rcnn.platform.stats import compare as cmp
from sparse_rcnn.platform.stats.power import power_two_sample
from sparse_rcnn.platform.stats.sequential import (
    VERDICTS,
    SequentialDesign,
    decide,
    wave_schedule,
)
from sparse_rcnn.platform.stats.sequential_levels import nominal_levels
from sparse_rcnn.platform.stats.sequential_plan import outcomes, plan_sequential, simulate
from sparse_rcnn.platform.stats.spending import (
    SPENDING_NAMES,
    Spending,
    crossing_probabilities,
    z_boundaries,
)

ALPHA, EFFECT = 0.05, 0.3
SCHEDULE = wave_schedule(3, 2, 20)
SIMS = 20_000
POCOCK = Spending("pocock")


def tol(p: float, sims: int) -> float:
    return 3.0 * math.sqrt(p * (1.0 - p) / sims)


def design(**kw) -> SequentialDesign:
    return SequentialDesign(**{"max_seeds": 20, "effect_size": EFFECT, "alpha": ALPHA, **kw})


def split(x: np.ndarray, schedule=SCHEDULE) -> list[np.ndarray]:
    """One study's values (replicate order) as its waves."""
    return [x[a:b] for a, b in zip((0, *schedule[:-1]), schedule, strict=True)]


# --- spending and boundaries ---------------------------------------------------------------


@pytest.mark.parametrize("name", SPENDING_NAMES)
def test_spending_rises_to_alpha(name):
    sp = Spending(name)
    t = np.linspace(0.01, 1.0, 100)
    spent = sp.spent(t, ALPHA)
    assert np.all(np.diff(spent) > 0) and spent[-1] == pytest.approx(ALPHA, abs=1e-12)
    inc = sp.increments(np.array(SCHEDULE) / 20, ALPHA)
    assert inc.sum() == pytest.approx(ALPHA, abs=1e-12) and np.all(inc > 0)


def test_obrien_fleming_is_very_conservative_at_the_first_look():
    assert Spending().spent(3 / 20, ALPHA) < 1e-6  # 4e-7 of the 0.05 after 3 of 20 seeds
    assert Spending("pocock").spent(3 / 20, ALPHA) > 0.01
    lv = nominal_levels(SCHEDULE, None, 20, ALPHA, Spending(), True)
    assert stats.t.isf(lv.two_sided[0] / 2, 2) > 100  # |t| on 2 df must exceed 100 at 3 seeds
    assert lv.two_sided[-1] > 0.025  # most of alpha is left for the last look


def test_z_boundaries_match_published_values_and_an_independent_integration():
    t = np.arange(1, 6) / 5
    # Lan-DeMets O'Brien-Fleming type, one-sided 0.025, 5 equal looks (gsDesign, ldbounds).
    obf = z_boundaries(t, 0.025, Spending(), sides=1)
    np.testing.assert_allclose(obf, [4.877, 3.357, 2.680, 2.290, 2.031], atol=1e-3)
    poc = z_boundaries(t, ALPHA, POCOCK)
    np.testing.assert_allclose(poc, [2.438, 2.427, 2.410, 2.397, 2.386], atol=1e-3)
    for b in (obf, poc):
        sides = 1 if b is obf else 2
        level = 0.025 if b is obf else ALPHA
        p = crossing_probabilities(b, t, sides=sides)
        assert p.sum() == pytest.approx(level, abs=1e-8)
    # Genz's multivariate normal integration: P(no crossing of |Z_k| >= b_k) = 1 - alpha.
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    inside = stats.multivariate_normal(np.zeros(5), cov).cdf(poc, lower_limit=-poc)
    assert inside == pytest.approx(1 - ALPHA, abs=2e-4)


def test_t_levels_tend_to_the_z_levels_with_many_seeds():
    ns, t = (60, 120, 180, 240), np.array([0.25, 0.5, 0.75, 1.0])
    for sp in (Spending(), POCOCK):
        lv = nominal_levels(ns, None, 240, ALPHA, sp, True)
        np.testing.assert_allclose(
            lv.two_sided, 2 * stats.norm.sf(z_boundaries(t, ALPHA, sp)), rtol=0.03
        )
        np.testing.assert_allclose(
            lv.one_sided, stats.norm.sf(z_boundaries(t, ALPHA, sp, sides=1)), rtol=0.05
        )


def test_earlier_levels_do_not_change_when_a_wave_is_added():
    short = nominal_levels((3, 5, 7), None, 20, ALPHA, POCOCK, False)
    full = nominal_levels(SCHEDULE, None, 20, ALPHA, POCOCK, True)
    np.testing.assert_array_equal(short.two_sided, full.two_sided[:3])
    np.testing.assert_array_equal(short.one_sided, full.one_sided[:3])


# --- decide ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.4])
def test_a_single_final_wave_is_the_fixed_test(shift):
    rng = np.random.default_rng(11)
    for _ in range(20):
        d = shift + 0.15 * rng.standard_normal(8)
        r = decide([d], design=SequentialDesign(8, EFFECT, ALPHA))
        fixed, tost = cmp.paired_t(d, 1 - ALPHA), cmp.paired_t(d, 1 - 2 * ALPHA)
        assert r.final and r.stopped_wave == 1 and r.seeds_used == 8
        assert (r.rci.low, r.rci.high) == pytest.approx((fixed.ci.low, fixed.ci.high))
        assert (r.rci_equivalence.low, r.rci_equivalence.high) == pytest.approx(
            (tost.ci.low, tost.ci.high)
        )
        p_eq = cmp.tost_p(fixed.difference, fixed.se, fixed.df, EFFECT)
        expected = (
            "different" if fixed.p <= ALPHA else ("equivalent" if p_eq <= ALPHA else "undecided")
        )
        assert r.verdict == expected


@pytest.mark.parametrize("paired", [True, False])
@pytest.mark.parametrize("futility", [False, True])
def test_decide_agrees_with_the_vectorised_rules(paired, futility):
    rng = np.random.default_rng(12 + paired + 2 * futility)
    des = design(futility=futility, spending=POCOCK)
    sims = 120
    a = rng.uniform(-0.1, 0.4) + 0.3 * rng.standard_normal((sims, 20))
    b = None if paired else 0.3 * rng.standard_normal((sims, 20))
    vec = outcomes(des, SCHEDULE, a, b)
    for i in range(sims):
        for k in range(1, len(SCHEDULE) + 1):
            wa = split(a[i])[:k]
            wb = None if b is None else split(b[i])[:k]
            r = decide(wa, wb, design=des)
            if r.verdict != "open":
                break
        assert VERDICTS.index(r.verdict) == vec.verdict[i], i
        assert r.seeds_used == vec.seeds[i]
        assert r.rci.low == pytest.approx(vec.rci_low[i])
        assert r.rci.high == pytest.approx(vec.rci_high[i])


def test_open_until_a_boundary_is_crossed():
    rng = np.random.default_rng(3)
    d = 0.6 + 0.3 * rng.standard_normal(20)
    des = design()
    first = decide([d[:3]], design=des)
    assert first.verdict == "open" and first.stopped_wave is None and not first.final
    assert first.looks[0].boundary > 100  # O'Brien-Fleming: nothing decides at 3 seeds
    for k in range(2, len(SCHEDULE) + 1):
        r = decide(split(d)[:k], design=des)
        if r.verdict != "open":
            break
    assert r.verdict == "different" and r.stopped_wave == k < len(SCHEDULE)
    last = r.looks[-1]
    assert last.crossed == "different" and abs(last.statistic) >= last.boundary
    assert r.rci.low > 0 and [lk.wave for lk in r.looks] == list(range(1, k + 1))
    # More waves than needed: the verdict stays at the stopping wave.
    again = decide(split(d), design=des)
    assert again.stopped_wave == k and any("not used" in n for n in again.notes)


def test_futility_stops_hopeless_comparisons():
    rng = np.random.default_rng(4)
    des = design(futility=True)
    stopped = 0
    for _ in range(40):
        d = 2.0 * rng.standard_normal(20)  # sigma far too large for 0.3 at 20 seeds
        for k in range(1, len(SCHEDULE) + 1):
            r = decide(split(d)[:k], design=des)
            if r.verdict != "open":
                break
        if r.looks[-1].crossed == "futility":
            stopped += 1
            assert r.verdict == "undecided" and r.seeds_used < 20
            assert r.looks[-1].conditional_power < 0.1
    assert stopped >= 30


def test_decide_refuses_bad_input_with_one_line():
    des = design()
    with pytest.raises(InputError, match="wave 2 holds NaN"):
        decide([[0.1, 0.2, 0.3], [np.nan, 0.1]], design=des)
    with pytest.raises(InputError, match="nothing to analyse"):
        decide([], design=des)
    with pytest.raises(InputError, match="2 for A but 1 for the baseline"):
        decide([[1, 2], [3]], [[1, 2]], design=des)
    with pytest.raises(InputError, match="exceed max_seeds 20"):
        decide([np.zeros(21) + 0.1], design=des)
    with pytest.raises(InputError, match="alpha"):
        SequentialDesign(20, EFFECT, 0.7)
    with pytest.raises(InputError, match="effect_size"):
        SequentialDesign(20, -1.0)
    with pytest.raises(InputError, match="spending"):
        Spending("linear")
    with pytest.raises(InputError, match="initial >= 2"):
        wave_schedule(1, 2, 20)
    r = decide([[0.1]], design=des)  # one pair: no look yet
    assert r.verdict == "open" and r.looks == () and r.notes


# --- error rates by simulation --------------------------------------------------------------


@pytest.mark.parametrize("spending", [Spending(), POCOCK])
@pytest.mark.parametrize("futility", [False, True])
def test_type_one_error_is_kept(spending, futility):
    # sigma large against the margin, so equivalence rarely stops a study first.
    sim = simulate(design(spending=spending, futility=futility), SCHEDULE, 0.0, 1.0, SIMS,
                   np.random.default_rng(20 + futility))  # fmt: skip
    assert sim.rate("different") <= ALPHA + tol(ALPHA, SIMS), sim.rate("different")


@pytest.mark.parametrize("variance_ratio", [1.0, 100.0])
def test_welch_type_one_error_is_kept(variance_ratio):
    sims = 10_000
    sim = simulate(design(), SCHEDULE, 0.0, 1.0, sims, np.random.default_rng(30),
                   paired=False, sigma_b=math.sqrt(variance_ratio))  # fmt: skip
    assert sim.rate("different") <= ALPHA + tol(ALPHA, sims), sim.rate("different")


@pytest.mark.parametrize("spending", [Spending(), POCOCK])
def test_power_at_the_effect_of_interest_is_as_planned(spending):
    sigma = 0.45  # the fixed design with 20 seeds has about 80 % power here
    plan = plan_sequential(EFFECT, sigma, SCHEDULE, spending=spending, sims=SIMS, seed=1)
    sim = simulate(design(spending=spending), SCHEDULE, EFFECT, sigma, SIMS,
                   np.random.default_rng(40))  # fmt: skip
    slack = 3 * math.hypot(plan.power_se, sim.rate_se("different"))
    assert sim.rate("different") >= plan.power - slack
    # Spending costs little power against the fixed design with the most seeds.
    loss = power_two_sample(EFFECT, sigma, 20, ALPHA, paired=True) - plan.power
    assert loss < (0.06 if spending.name == "obrien_fleming" else 0.2), loss
    # Repeated confidence intervals cover the true difference after stopping.
    covered = np.mean((sim.rci_low <= EFFECT) & (EFFECT <= sim.rci_high))
    assert covered >= 1 - ALPHA - tol(1 - ALPHA, SIMS)


def test_equivalence_is_reached_and_its_error_kept():
    # No difference, small sigma: equivalent, early.
    sim0 = simulate(design(), SCHEDULE, 0.0, 0.1, SIMS, np.random.default_rng(50))
    assert sim0.rate("equivalent") >= 0.99 and sim0.mean_seeds < 10
    # A true difference of exactly +/- the margin: declared equivalent at most alpha.
    for sigma, true in ((0.3, EFFECT), (0.3, -EFFECT), (0.45, EFFECT)):
        for sp in (Spending(), POCOCK):
            sim = simulate(design(spending=sp), SCHEDULE, true, sigma, SIMS,
                           np.random.default_rng(51))  # fmt: skip
            assert sim.rate("equivalent") <= ALPHA + tol(ALPHA, SIMS), (sigma, true, sp)


def test_average_seeds_below_the_fixed_design_with_the_same_power():
    plan = plan_sequential(EFFECT, 0.3, SCHEDULE, sims=SIMS, seed=2)
    assert plan.fixed_seeds is not None and plan.power > 0.9
    se = 3 * plan.expected_seeds_effect / math.sqrt(SIMS)  # generous: std(seeds) < mean
    assert plan.expected_seeds_effect + se < plan.fixed_seeds
    assert plan.expected_seeds_null + se < plan.fixed_seeds  # equivalence stops early
    assert plan.saving_effect > 0.15
    assert plan.type_one <= ALPHA + tol(ALPHA, SIMS)

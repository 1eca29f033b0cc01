"""compare: Welch, paired t, permutation tests with ties, P(A > B) and its Newcombe interval,
TOST, Hedges' g and Holm, against scipy, brute force and hand-worked values."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from sparse_rcnn.platform.stats.compare import (
    hedges_g,
    holm,
    mann_whitney_p,
    paired_t,
    probability_of_superiority,
    sign_flip_p,
    smallest_rank_p,
    superiority_interval,
    tost_p,
    welch,
    wilcoxon_p,
)

A = np.array([45.4, 45.6, 45.35, 45.7, 45.5])
B = np.array([45.0, 45.3, 44.8, 45.1, 44.9])


def test_welch_matches_scipy():
    w = welch(A, B)
    ref = stats.ttest_ind(A, B, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert w.difference == pytest.approx(A.mean() - B.mean())
    assert w.p == pytest.approx(ref.pvalue, rel=1e-12)
    assert (w.ci.low, w.ci.high) == pytest.approx((ci.low, ci.high), rel=1e-12)
    ci90 = ref.confidence_interval(0.9)
    assert (welch(A, B, 0.9).ci.low, welch(A, B, 0.9).ci.high) == pytest.approx(
        (ci90.low, ci90.high)
    )


def test_paired_t_matches_scipy_ttest_rel():
    res = stats.ttest_rel(A, B)
    p = paired_t(A - B)
    assert p.p == pytest.approx(res.pvalue, rel=1e-12)
    ci = res.confidence_interval(0.95)
    assert (p.ci.low, p.ci.high) == pytest.approx((ci.low, ci.high), rel=1e-12)


def _brute_mw_p(x, y):
    """Two-sided permutation p of U by enumerating every relabeling (ties count 1/2)."""
    pooled = np.concatenate([x, y])
    n = x.size
    u_obs = probability_of_superiority(x, y) * x.size * y.size
    mean_u = x.size * y.size / 2
    us = []
    for idx in itertools.combinations(range(pooled.size), n):
        mask = np.zeros(pooled.size, bool)
        mask[list(idx)] = True
        us.append(probability_of_superiority(pooled[mask], pooled[~mask]) * x.size * y.size)
    us = np.array(us)
    return np.mean(np.abs(us - mean_u) >= abs(u_obs - mean_u) - 1e-9)


def test_mann_whitney_is_exact_with_ties():
    # AP rounded to 0.01 ties: scipy's method="exact" ignores ties (finding 6).
    x, y = np.array([0.1, 0.2, 0.2, 0.3]), np.array([0.2, 0.3, 0.3, 0.4])
    brute = _brute_mw_p(x, y)
    assert mann_whitney_p(x, y) == pytest.approx(brute)
    assert stats.mannwhitneyu(x, y, method="exact").pvalue != pytest.approx(brute)
    # complete separation without ties: 2 / C(10, 5)
    assert mann_whitney_p(A, B) == pytest.approx(2 / math.comb(10, 5))
    assert smallest_rank_p(4, 4) == pytest.approx(2 / 70)


def test_wilcoxon_and_sign_flip_match_scipy_and_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(5):
        d = np.round(rng.normal(0.2, 1.0, 7), 1)  # ties and maybe zeros
        ref = stats.wilcoxon(d, method=stats.PermutationMethod(n_resamples=np.inf)).pvalue
        assert wilcoxon_p(d) == pytest.approx(ref)
        flips = np.array(list(itertools.product([-1, 1], repeat=d.size)))
        sums = (flips * d).sum(1)
        brute = np.mean(np.abs(sums) >= abs(d.sum()) - 1e-9)
        assert sign_flip_p(d) == pytest.approx(brute)
    # Down to one pair, or one nonzero difference among zeros (a real sequential study met it):
    # brute force says p = 1; scipy (permutation_test, and wilcoxon with it) refuses a sample
    # of one, so brute force is the oracle here.
    for d in (np.array([0.4]), np.array([0.0, 0.0, -0.14])):
        flips = np.array(list(itertools.product([-1, 1], repeat=d.size)))
        brute = np.mean(np.abs((flips * d).sum(1)) >= abs(d.sum()) - 1e-9)
        assert sign_flip_p(d) == brute == 1.0
        nz = d[d != 0]  # Wilcoxon: the one nonzero difference has rank 1, either sign
        ranks = np.array([[-1.0], [1.0]]) * stats.rankdata(np.abs(nz))
        brute = np.mean(np.abs(ranks.sum(1)) >= abs(np.sign(nz) @ stats.rankdata(np.abs(nz))))
        assert wilcoxon_p(d) == brute == 1.0


def test_probability_of_superiority_with_ties():
    # pairs: (1,1) tie 0.5, (1,2) 0, (3,1) 1, (3,2) 1 -> 2.5 / 4
    assert float(probability_of_superiority(np.array([1.0, 3.0]), np.array([1.0, 2.0]))) == 0.625
    u = stats.mannwhitneyu(A, B).statistic
    assert float(probability_of_superiority(A, B)) == pytest.approx(u / 25)


def test_newcombe_interval_published_value_and_monotone():
    lo, hi = superiority_interval(1.0, 4, 4)
    assert float(lo) == pytest.approx(0.583, abs=0.002) and float(hi) == 1.0
    lo, hi = superiority_interval(np.array([0.0, 0.25, 0.5, 0.75]), 4, 4)
    assert lo[0] == 0.0 and np.all(np.diff(lo) > 0) and np.all(np.diff(hi) > 0)
    assert lo[2] == pytest.approx(1 - hi[2])  # symmetric about 1/2
    # The interval solves Newcombe's equation at both ends.
    z2 = stats.norm.ppf(0.975) ** 2
    for t in (lo[1], hi[1]):
        v = t * (1 - t) / 16 * (1 + 3 * ((1 - t) / (2 - t) + t / (1 + t)))
        assert (0.25 - t) ** 2 == pytest.approx(z2 * v, rel=1e-6)


def test_tost_matches_the_90_percent_interval_rule():
    w = welch(A, B)
    for margin in (0.3, 0.5, 0.8):
        inside = welch(A, B, 0.90).ci
        equivalent = -margin < inside.low and inside.high < margin
        assert (tost_p(w.difference, w.se, w.df, margin) <= 0.05) == equivalent
    assert math.isnan(tost_p(0.0, 0.0, 4, 0.3))


def test_hedges_g_hand_worked():
    a, b = np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0])
    d = (4.0 - 2.0) / math.sqrt(2.5)
    df = 4
    j = math.gamma(df / 2) / (math.sqrt(df / 2) * math.gamma((df - 1) / 2))
    assert hedges_g(a, b) == pytest.approx(j * d)
    assert j == pytest.approx(1 - 3 / (4 * df - 1), abs=0.01)
    assert hedges_g(b, a) == pytest.approx(-j * d)


def test_holm_hand_worked():
    p = [0.03, 0.01, 0.04, 0.02]
    assert holm(p) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    out = holm([0.01, float("nan"), 0.04])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert holm([]).size == 0


def test_edge_cases():
    w = welch(np.array([45.0]), np.array([44.0, 44.5]))
    assert math.isnan(w.p) and w.ci is None and w.difference == pytest.approx(0.75)
    w = welch(np.array([45.0, 45.0]), np.array([44.0, 44.0]))
    assert math.isnan(w.p) and w.ci is None
    assert math.isnan(hedges_g(np.array([1.0, 1.0]), np.array([0.0, 0.0])))
    assert sign_flip_p(np.zeros(4)) == 1.0 and math.isnan(wilcoxon_p(np.zeros(3)))

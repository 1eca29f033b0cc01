"""compare: Welch, Mann-Whitney, P(A > B), Hedges' g against scipy/hand values; Holm by hand."""

import math

import numpy as np
import pytest
from scipy import stats

from sparse_rcnn.platform.stats.compare import (
    compare,
    compare_to_baseline,
    hedges_g,
    holm,
    probability_of_improvement,
)

A = [45.4, 45.6, 45.35, 45.7, 45.5]
B = [45.0, 45.3, 44.8, 45.1, 44.9]


def test_welch_and_mann_whitney_match_scipy():
    c = compare(A, B, n_resamples=2000)
    ref = stats.ttest_ind(A, B, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert c.difference == pytest.approx(np.mean(A) - np.mean(B))
    assert c.welch_p == pytest.approx(ref.pvalue)
    assert (c.difference_ci.low, c.difference_ci.high) == pytest.approx((ci.low, ci.high))
    assert c.mann_whitney_p == pytest.approx(stats.mannwhitneyu(A, B, method="exact").pvalue)
    # complete separation at n = 5: exact two-sided p is 2 / C(10, 5)
    assert c.mann_whitney_p == pytest.approx(2 / math.comb(10, 5))


def test_probability_of_improvement_with_ties():
    # pairs: (1,1) tie 0.5, (1,2) 0, (3,1) 1, (3,2) 1 -> 2.5 / 4
    assert float(probability_of_improvement(np.array([1.0, 3.0]), np.array([1.0, 2.0]))) == 0.625
    u = stats.mannwhitneyu(A, B).statistic
    assert compare(A, B, n_resamples=500).prob_improvement == pytest.approx(u / 25)
    x, y = [1.0, 2.0, 2.0, 3.0], [2.0, 3.0, 4.0, 5.0]
    assert float(probability_of_improvement(np.array(x), np.array(y))) == pytest.approx(
        stats.mannwhitneyu(x, y).statistic / 16
    )


def test_probability_of_improvement_bootstrap_interval():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.3, 1.0, 10), rng.normal(0.0, 1.0, 10)
    c = compare(a, b, n_resamples=1000, seed=5)
    ref = stats.bootstrap(
        (a, b),
        probability_of_improvement,
        n_resamples=1000,
        method="percentile",
        rng=np.random.default_rng(5),
    ).confidence_interval
    assert (c.prob_improvement_ci.low, c.prob_improvement_ci.high) == pytest.approx(
        (ref.low, ref.high)
    )
    assert 0.0 <= c.prob_improvement_ci.low <= c.prob_improvement <= c.prob_improvement_ci.high


def test_hedges_g_hand_worked():
    a, b = np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0])
    # s_a^2 = 4, s_b^2 = 1, s_pooled = sqrt(2.5 * ... ) = sqrt((2*4 + 2*1) / 4) = sqrt(2.5)
    d = (4.0 - 2.0) / math.sqrt(2.5)
    df = 4
    j = math.gamma(df / 2) / (math.sqrt(df / 2) * math.gamma((df - 1) / 2))
    assert hedges_g(a, b) == pytest.approx(j * d)
    assert j == pytest.approx(1 - 3 / (4 * df - 1), abs=0.01)
    assert hedges_g(b, a) == pytest.approx(-j * d)


def test_holm_hand_worked():
    # sorted 0.01, 0.02, 0.03, 0.04 with m = 4: 0.04, 0.06, 0.06 (monotone), 0.06
    p = [0.03, 0.01, 0.04, 0.02]
    assert holm(p) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    out = holm([0.01, float("nan"), 0.04])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert holm([]).size == 0


def test_holm_differs_from_benjamini_hochberg():
    p = [0.01, 0.02, 0.03, 0.04]
    assert holm(p) == pytest.approx([0.04, 0.06, 0.06, 0.06])
    assert stats.false_discovery_control(p) == pytest.approx([0.04] * 4)


def test_compare_to_baseline_applies_holm():
    settings = {"base": B, "a": A, "c": [45.1, 44.9, 45.2, 45.0, 45.3]}
    out = compare_to_baseline(settings, "base", n_resamples=200)
    assert [r.setting for r in out] == ["a", "c"]
    raw = [r.comparison.welch_p for r in out]
    assert [r.welch_p_holm for r in out] == pytest.approx(list(holm(raw)))
    assert out[0].comparison.welch_p == pytest.approx(stats.ttest_ind(A, B, equal_var=False).pvalue)
    with pytest.raises(KeyError):
        compare_to_baseline(settings, "missing")


def test_edge_cases():
    c = compare([45.0], [44.0, 44.5])
    assert math.isnan(c.welch_p) and c.difference_ci is None and c.prob_improvement_ci is None
    assert c.difference == pytest.approx(0.75) and c.notes
    c = compare([45.0, 45.0], [44.0, 44.0], n_resamples=200)
    assert math.isnan(c.welch_p) and math.isnan(c.hedges_g) and c.prob_improvement == 1.0
    assert any("zero spread" in note for note in c.notes)
    with pytest.warns(RuntimeWarning, match="a: excluded 1 NaN"):
        c = compare([*A, float("nan")], B, n_resamples=200)
    assert c.n_a == 5

"""summary: each statistic against scipy, plus the n = 0, 1, 2, identical and NaN cases."""

import math

import numpy as np
import pytest
from scipy import stats

from sparse_rcnn.platform.stats.summary import sigma_interval, summarize

APS = [45.0, 45.3, 44.8, 45.1, 44.9]


def test_matches_scipy_for_five_seeds():
    s = summarize(APS)
    x = np.array(APS)
    assert s.n == 5 and s.n_nan == 0
    assert s.mean == pytest.approx(x.mean())
    assert s.std == pytest.approx(np.std(x, ddof=1))
    assert s.sem == pytest.approx(stats.sem(x))
    ci = stats.ttest_1samp(x, 0.0).confidence_interval(0.95)
    assert (s.mean_ci.low, s.mean_ci.high) == pytest.approx((ci.low, ci.high))
    # published example: t-CI [44.78, 45.26]
    assert (s.mean_ci.low, s.mean_ci.high) == pytest.approx((44.78, 45.26), abs=0.005)
    assert s.iqm == pytest.approx(stats.trim_mean(x, 0.25))
    assert (s.minimum, s.maximum, s.range, s.median) == pytest.approx((44.8, 45.3, 0.5, 45.0))
    assert s.bootstrap_ci is None
    assert s.mean_ci_method == "t" and s.t_ci == s.mean_ci
    assert any("bootstrap not used: n = 5 < 20" in note for note in s.notes)


def test_sigma_interval_factors_match_published_table():
    for n, (lo, hi) in {
        3: (0.52, 6.28),
        5: (0.60, 2.87),
        10: (0.69, 1.83),
        30: (0.80, 1.34),
    }.items():
        ci = sigma_interval(1.0, n)
        assert (ci.low, ci.high) == pytest.approx((lo, hi), abs=0.006)
    s = summarize(APS)
    df = 4
    expected = (
        s.std * math.sqrt(df / stats.chi2.ppf(0.975, df)),
        s.std * math.sqrt(df / stats.chi2.ppf(0.025, df)),
    )
    assert (s.std_ci.low, s.std_ci.high) == pytest.approx(expected)


def test_studentized_bootstrap_from_n_20_matches_a_loop_oracle():
    x = np.random.default_rng(1).normal(45.0, 0.3, size=25)
    s = summarize(x, n_resamples=3000, seed=3)
    assert s.mean_ci_method == "studentized bootstrap" and s.mean_ci == s.bootstrap_ci
    # Oracle: the same resamples drawn one at a time, t* computed in a plain loop.
    rng = np.random.default_rng(3)
    n, t_star = x.size, []
    for start in range(0, 3000, 2000):
        idx = rng.integers(0, n, size=(min(2000, 3000 - start), n))
        for row in idx:
            xs = x[row]
            t_star.append((xs.mean() - x.mean()) / (xs.std(ddof=1) / math.sqrt(n)))
    q_lo, q_hi = np.quantile(t_star, [0.025, 0.975])
    sem = x.std(ddof=1) / math.sqrt(n)
    expected = (x.mean() - q_hi * sem, x.mean() - q_lo * sem)
    assert (s.mean_ci.low, s.mean_ci.high) == pytest.approx(expected)
    assert s.mean_ci.low < s.mean < s.mean_ci.high
    assert s.t_ci is not None and s.t_ci != s.mean_ci


def test_nan_is_excluded_with_a_warning():
    with pytest.warns(RuntimeWarning, match="excluded 2 NaN value"):
        s = summarize([*APS, float("nan"), float("nan")])
    assert s.n == 5 and s.n_nan == 2
    assert s.mean == pytest.approx(np.mean(APS))
    assert any("2 NaN" in note for note in s.notes)


def test_empty_and_all_nan():
    s = summarize([])
    assert s.n == 0 and math.isnan(s.mean) and s.mean_ci is None and s.notes
    with pytest.warns(RuntimeWarning):
        s = summarize([float("nan")])
    assert s.n == 0 and s.n_nan == 1 and math.isnan(s.iqm)


def test_single_value():
    s = summarize([44.5])
    assert s.mean == 44.5 and s.iqm == 44.5 and s.range == 0.0
    assert math.isnan(s.std) and math.isnan(s.sem)
    assert s.mean_ci is None and s.std_ci is None and s.bootstrap_ci is None
    assert any("n = 1" in note for note in s.notes)


def test_two_values():
    s = summarize([44.0, 45.0])
    assert s.std == pytest.approx(math.sqrt(0.5))
    ci = stats.t.interval(0.95, 1, loc=44.5, scale=stats.sem([44.0, 45.0]))
    assert (s.mean_ci.low, s.mean_ci.high) == pytest.approx(ci)
    assert s.iqm == pytest.approx(44.5)


def test_identical_values_give_zero_width_not_errors():
    s = summarize([45.0] * 10)
    assert s.std == 0.0 and s.sem == 0.0
    assert s.mean_ci.width == 0.0 and s.std_ci.width == 0.0
    assert s.bootstrap_ci is None
    assert any("identical" in note for note in s.notes)


def test_rejects_infinite_and_2d():
    with pytest.raises(ValueError, match="infinite"):
        summarize([1.0, float("inf")])
    with pytest.raises(ValueError, match="1-D"):
        summarize([[1.0, 2.0]])

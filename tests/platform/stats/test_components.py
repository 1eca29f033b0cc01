"""components: variance components with chi-square intervals, and test-set noise ratios."""

import math

import numpy as np
import pytest
from scipy import stats

from sparse_rcnn.platform.stats.components import (
    NOT_ADDITIVE_NOTE,
    decompose,
    noise_ratio,
    variance_interval,
)

GROUPS = {
    "init": [45.0, 45.3, 44.8, 45.1, 44.9],
    "data_order": [45.2, 44.7, 45.0, 45.4, 44.9],
    "augmentation": [45.1, 45.0, 45.2, 44.8],
    "nondeterminism": [45.0, 45.1, 44.9, 45.2, 45.0],
    "all": [45.3, 44.6, 45.0, 45.4, 44.8, 45.1],
}


def test_components_are_sample_variances_with_chi2_intervals():
    d = decompose(GROUPS)
    assert [c.source for c in d.components] == list(GROUPS)[:4]
    for c in d.components:
        x = np.array(GROUPS[c.source])
        assert c.variance == pytest.approx(np.var(x, ddof=1))
        assert c.std == pytest.approx(np.std(x, ddof=1))
        df = x.size - 1
        lo = df * c.variance / stats.chi2.ppf(0.975, df)
        hi = df * c.variance / stats.chi2.ppf(0.025, df)
        assert (c.variance_ci.low, c.variance_ci.high) == pytest.approx((lo, hi))
    assert d.total.variance == pytest.approx(np.var(GROUPS["all"], ddof=1))
    assert d.sum_of_components == pytest.approx(sum(c.variance for c in d.components))
    assert d.note == NOT_ADDITIVE_NOTE and "need not add up" in d.note


def test_variance_interval_is_sigma_interval_squared():
    ci = variance_interval(1.0, 5)
    assert (math.sqrt(ci.low), math.sqrt(ci.high)) == pytest.approx((0.60, 2.87), abs=0.006)
    assert variance_interval(1.0, 1) is None


def test_small_group_and_nan():
    with pytest.warns(RuntimeWarning, match="init: excluded 1 NaN"):
        d = decompose({"init": [45.0, float("nan")], "data_order": [45.0, 45.2]}, total_key=None)
    init, order = d.components
    assert init.n == 1 and math.isnan(init.variance) and init.variance_ci is None and init.reason
    assert d.total is None and d.sum_of_components == pytest.approx(0.02)


def test_noise_ratio():
    r = noise_ratio([0.1, 0.2, 0.3], seed_std=0.4)
    assert r.mean_test_se == pytest.approx(0.2)
    assert r.rms_test_se == pytest.approx(math.sqrt((0.01 + 0.04 + 0.09) / 3))
    assert r.ratio == pytest.approx(0.5)
    assert r.seed_std_excess == pytest.approx(math.sqrt(0.16 - 0.14 / 3))
    z = noise_ratio([0.5], seed_std=0.0)
    assert math.isnan(z.ratio) and z.seed_std_excess == 0.0
    with pytest.raises(ValueError):
        noise_ratio([-0.1], 0.2)

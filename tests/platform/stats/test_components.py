"""components: components net of nondeterminism with MLS intervals, chi-square intervals,
the additive total, dominance, and the validation-set share of seed variance."""

import math

import numpy as np
import pytest
from scipy import stats

from sparse_rcnn.platform.stats.components import (
    decompose,
    mls_difference_interval,
    validation_set_share,
    variance_interval,
)

GROUPS = {
    "init": np.array([45.0, 45.3, 44.8, 45.1, 44.9]),
    "data_order": np.array([45.2, 44.7, 45.0, 45.4, 44.9]),
    "augmentation": np.array([45.1, 45.0, 45.2, 44.8]),
    "nondeterminism": np.array([45.0, 45.1, 44.9, 45.2, 45.0]),
    "all": np.array([45.3, 44.6, 45.0, 45.4, 44.8, 45.1]),
}


def test_components_subtract_the_nondeterminism_variance():
    d = decompose(GROUPS)
    s_nd = np.var(GROUPS["nondeterminism"], ddof=1)
    by = {c.source: c for c in d.components}
    for src in ("init", "data_order", "augmentation"):
        s2 = np.var(GROUPS[src], ddof=1)
        assert by[src].group_variance == pytest.approx(s2)
        assert by[src].variance == pytest.approx(max(0.0, s2 - s_nd))
        assert by[src].method == "mls" and by[src].ci.low >= 0
    nd = by["nondeterminism"]
    assert nd.variance == pytest.approx(s_nd) and nd.method == "chi2"
    assert (nd.ci.low, nd.ci.high) == pytest.approx(
        (4 * s_nd / stats.chi2.ppf(0.975, 4), 4 * s_nd / stats.chi2.ppf(0.025, 4))
    )
    assert d.total.variance == pytest.approx(np.var(GROUPS["all"], ddof=1))
    assert "need not add up" in d.note


def test_mls_hand_computed_and_reduces_to_chi2_when_s2_is_zero():
    s1, s2, n1, n2, a = 0.09, 0.02, 7, 5, 0.05
    g1 = 1 - n1 / stats.chi2.ppf(1 - a / 2, n1)
    g2 = 1 - n2 / stats.chi2.ppf(1 - a / 2, n2)
    h1 = n1 / stats.chi2.ppf(a / 2, n1) - 1
    h2 = n2 / stats.chi2.ppf(a / 2, n2) - 1
    fu, fl = stats.f.ppf(1 - a / 2, n1, n2), stats.f.ppf(a / 2, n1, n2)
    g12 = ((fu - 1) ** 2 - g1**2 * fu**2 - h2**2) / fu
    h12 = ((1 - fl) ** 2 - h1**2 * fl**2 - g2**2) / fl
    lo = s1 - s2 - math.sqrt(g1**2 * s1**2 + h2**2 * s2**2 + g12 * s1 * s2)
    hi = s1 - s2 + math.sqrt(h1**2 * s1**2 + g2**2 * s2**2 + h12 * s1 * s2)
    got = mls_difference_interval(s1, n1, s2, n2)
    assert (float(got[0]), float(got[1])) == pytest.approx((lo, hi))
    # With s2 = 0 the MLS interval is the chi-square interval of s1 (on nu1 df).
    ci = variance_interval(s1, n1 + 1)
    got = mls_difference_interval(s1, n1, 0.0, n2)
    assert (float(got[0]), float(got[1])) == pytest.approx((ci.low, ci.high))


def test_additive_total_without_an_all_group_and_dominance():
    groups = {k: v for k, v in GROUPS.items() if k != "all"}
    d = decompose(groups)
    s = {k: np.var(v, ddof=1) for k, v in groups.items()}
    expected = s["init"] + s["data_order"] + s["augmentation"] - 2 * s["nondeterminism"]
    assert d.total.method == "additive" and d.total.variance == pytest.approx(max(0, expected))
    rng = np.random.default_rng(0)
    big = {
        "init": rng.normal(0, 3.0, 30),
        "data_order": rng.normal(0, 0.1, 30),
        "nondeterminism": rng.normal(0, 0.1, 30),
    }
    assert decompose(big).dominant == "init"
    assert decompose(GROUPS).dominant is None  # intervals overlap at n = 5


def test_without_a_nondeterminism_group_the_interval_says_it_includes_noise():
    d = decompose({"init": GROUPS["init"], "data_order": GROUPS["data_order"]})
    assert all(c.method == "chi2-with-noise-floor" for c in d.components)
    assert d.total is None


def test_validation_set_share_is_half_the_mean_paired_variance():
    rng = np.random.default_rng(1)
    reps = rng.normal(0, 0.1, (3, 500)) + rng.normal(0, 0.5, 500)  # shared draws
    values = np.array([40.0, 40.4, 39.8])
    share = validation_set_share(values, reps)
    v = [np.var(reps[i] - reps[j], ddof=1) for i, j in ((0, 1), (0, 2), (1, 2))]
    assert share.set_specific == pytest.approx(0.5 * np.mean(v))
    assert share.seed_variance == pytest.approx(np.var(values, ddof=1))
    assert share.distribution == pytest.approx(max(0, share.seed_variance - share.set_specific))
    assert validation_set_share(values[:1], reps[:1]) is None

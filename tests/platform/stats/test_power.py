"""power: the published seeds-per-arm and MDE tables, and the formula against scipy.stats.nct."""

import math

import pytest
from scipy import stats

from sparse_rcnn.platform.stats.power import (
    mde_table,
    minimum_detectable_effect,
    normal_approx_seeds,
    plan_seeds,
    power_two_sample,
    seeds_per_arm,
)

# sigma (AP): (80% power, 90% power) seeds per arm for a 0.3 AP effect at alpha 0.05
PUBLISHED = {
    0.10: (4, 4),
    0.15: (6, 7),
    0.20: (9, 11),
    0.25: (12, 16),
    0.30: (17, 23),
    0.40: (29, 39),
}


@pytest.mark.parametrize("sigma", sorted(PUBLISHED))
def test_seeds_per_arm_matches_published(sigma):
    n80, n90 = PUBLISHED[sigma]
    assert seeds_per_arm(0.3, sigma, 0.8) == n80
    assert seeds_per_arm(0.3, sigma, 0.9) == n90
    # smallest: one seed fewer does not reach the power (n = 2 is the floor)
    if n80 > 2:
        assert power_two_sample(0.3, sigma, n80 - 1) < 0.8 <= power_two_sample(0.3, sigma, n80)


def test_power_formula_against_nct_directly():
    n, d = 7, 1.4
    df, nc = 2 * n - 2, d * math.sqrt(n / 2)
    tc = stats.t.ppf(0.975, df)
    expected = stats.nct.sf(tc, df, nc) + stats.nct.cdf(-tc, df, nc)
    assert power_two_sample(1.4, 1.0, n) == pytest.approx(expected)
    assert power_two_sample(-1.4, 1.0, n) == pytest.approx(expected)
    assert power_two_sample(0.0, 1.0, n) == pytest.approx(0.05)


def test_mde_matches_published():
    assert minimum_detectable_effect(5) == pytest.approx(2.02, abs=0.005)
    table = mde_table([3, 8, 10, 16, 20, 30])
    assert table == pytest.approx([3.07, 1.51, 1.33, 1.02, 0.91, 0.74], abs=0.006)
    assert minimum_detectable_effect(5, sigma=0.3) == pytest.approx(0.3 * 2.02, abs=0.002)
    assert power_two_sample(minimum_detectable_effect(9), 1.0, 9) == pytest.approx(0.8)


def test_plan_and_normal_approximation():
    (plan,) = plan_seeds(0.3, [0.2])
    assert (plan.n_power_80, plan.n_power_90) == (9, 11)
    assert normal_approx_seeds(1.0, 1.0) == pytest.approx(15.7, abs=0.01)


def test_invalid_inputs():
    with pytest.raises(ValueError):
        seeds_per_arm(0.0, 0.2)
    with pytest.raises(ValueError):
        power_two_sample(0.3, 0.2, 1)
    with pytest.raises(ValueError):
        power_two_sample(0.3, 0.0, 5)


def test_power_is_finite_for_every_n_up_to_10000():
    # Finding 7: nct.cdf(-t, df, nc) was NaN for nc > ~8.
    assert power_two_sample(0.3, 0.2, 65) == pytest.approx(1.0)
    assert math.isfinite(minimum_detectable_effect(200))
    for n in (2, 10, 65, 200, 1000, 10_000):
        for effect in (0.01, 0.3, 5.0):
            for paired in (False, True):
                p = power_two_sample(effect, 0.2, n, paired=paired)
                assert 0.0 <= p <= 1.0 and math.isfinite(p)
    # equal to the two-tail formula where both tails are finite
    df = 10
    tc = stats.t.ppf(0.975, df)
    assert power_two_sample(2.0, 1.0, 6) == pytest.approx(
        stats.nct.sf(tc, df, 2.0 * math.sqrt(3)) + stats.nct.cdf(-tc, df, 2.0 * math.sqrt(3))
    )


def test_paired_power_is_the_one_sample_t():
    n, d = 6, 0.8
    tc = stats.t.ppf(0.975, n - 1)
    nc = d * math.sqrt(n)
    expected = stats.nct.sf(tc, n - 1, nc) + stats.nct.cdf(-tc, n - 1, nc)
    assert power_two_sample(d, 1.0, n, paired=True) == pytest.approx(expected)
    assert seeds_per_arm(0.3, 0.2, paired=True) < seeds_per_arm(0.3, 0.2)

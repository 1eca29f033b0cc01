"""The analysis of a results table: one test per finding of the statistics review (each fails
on the old report), and every number against independent implementations (scipy, statsmodels,
brute force) on random tables generated here, not stored in the repository."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower
from statsmodels.stats.weightstats import ttest_ind, ttost_ind, ttost_paired

from sparse_rcnn.dashboards.report_text import analysis_json, conclusions, to_markdown
from sparse_rcnn.platform.stats.analysis import analyze
from sparse_rcnn.platform.stats.table import Run, TableError


def table(values: dict[str, list[float]], *, replicate: bool = False, source: str = "all"):
    return [
        Run(s, r, float(v), source, r if replicate else None, f"{s}-{source}-{r}")
        for s, vals in values.items()
        for r, v in enumerate(vals)
    ]


@pytest.mark.parametrize("seed", range(6))
def test_unpaired_numbers_match_scipy_and_statsmodels(seed):
    rng = np.random.default_rng(1000 + seed)
    n_a, n_b = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    b = np.round(40 + 0.25 * rng.standard_normal(n_b), 2)
    a = np.round(40 + rng.uniform(-0.4, 0.4) + 0.25 * rng.standard_normal(n_a), 2)
    res = analyze(table({"base": list(b), "new": list(a)}), effect_size=0.3)
    (c,) = res.comparisons
    assert c.design == "unpaired" and (c.n_a, c.n_b) == (n_a, n_b)
    tt = stats.ttest_ind(a, b, equal_var=False)
    assert c.diff == pytest.approx(a.mean() - b.mean())
    assert c.p_welch == pytest.approx(tt.pvalue, rel=1e-10)
    assert c.p_welch == pytest.approx(ttest_ind(a, b, usevar="unequal")[1], rel=1e-10)
    ci = tt.confidence_interval(0.95)
    assert (c.ci.low, c.ci.high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert c.ci_simultaneous == c.ci  # one comparison
    p_tost = ttost_ind(a, b, -0.3, 0.3, usevar="unequal")[0]
    assert c.p_equivalence == pytest.approx(p_tost, rel=1e-8)
    u = stats.mannwhitneyu(a, b).statistic
    assert c.p_superiority == pytest.approx(u / (n_a * n_b))
    perm = stats.mannwhitneyu(a, b, method=stats.PermutationMethod(n_resamples=np.inf))
    assert c.p_mann_whitney == pytest.approx(perm.pvalue)
    s = res.settings[1].summary
    assert (s.mean, s.std) == pytest.approx((a.mean(), a.std(ddof=1)))
    sp = math.sqrt(((n_a - 1) * a.var(ddof=1) + (n_b - 1) * b.var(ddof=1)) / (n_a + n_b - 2))
    assert res.power.sigma == pytest.approx(sp) and res.power.df == n_a + n_b - 2
    n80 = TTestIndPower().solve_power(effect_size=0.3 / sp, alpha=0.05, power=0.8)
    assert res.power.seeds_per_arm_80 == max(2, math.ceil(n80 - 1e-9))


@pytest.mark.parametrize("seed", range(4))
def test_paired_numbers_match_scipy_and_statsmodels(seed):
    rng = np.random.default_rng(2000 + seed)
    n = int(rng.integers(4, 9))
    shared = 0.3 * rng.standard_normal(n)  # replicate effects shared by both settings
    b = 40 + shared + 0.1 * rng.standard_normal(n)
    a = 40.2 + shared + 0.1 * rng.standard_normal(n)
    res = analyze(table({"base": list(b), "new": list(a)}, replicate=True))
    (c,) = res.comparisons
    assert c.design == "paired" and c.n_pairs == n
    rel = stats.ttest_rel(a, b)
    assert c.p == pytest.approx(rel.pvalue, rel=1e-10)
    ci = rel.confidence_interval(0.95)
    assert (c.ci.low, c.ci.high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert c.p_equivalence == pytest.approx(ttost_paired(a, b, -0.3, 0.3)[0], rel=1e-8)
    wil = stats.wilcoxon(a - b, method=stats.PermutationMethod(n_resamples=np.inf)).pvalue
    assert c.p_wilcoxon == pytest.approx(wil)
    assert c.correlation == pytest.approx(stats.pearsonr(a, b).statistic)
    sd = np.std(a - b, ddof=1)
    n80 = TTestPower().solve_power(effect_size=0.3 / sd, alpha=0.05, power=0.8)
    assert c.seeds_paired_80 == max(2, math.ceil(n80 - 1e-9))
    # The unpaired analysis of the same table ignores the pairing (Welch).
    (u,) = analyze(
        table({"base": list(b), "new": list(a)}, replicate=True), paired=False
    ).comparisons
    assert u.design == "unpaired" and u.p == pytest.approx(
        stats.ttest_ind(a, b, equal_var=False).pvalue
    )


def test_three_settings_holm_and_bonferroni_match_statsmodels():
    rng = np.random.default_rng(3)
    vals = {f"s{i}": list(40 + 0.1 * i + 0.2 * rng.standard_normal(5)) for i in range(4)}
    res = analyze(table(vals))
    ps = [c.p for c in res.comparisons]
    assert [c.p_adjusted for c in res.comparisons] == pytest.approx(
        list(multipletests(ps, method="holm")[1])
    )
    for c in res.comparisons:
        a, b = np.array(vals[c.a]), np.array(vals["s0"])
        ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(1 - 0.05 / 3)
        assert (c.ci_simultaneous.low, c.ci_simultaneous.high) == pytest.approx((ci.low, ci.high))


def test_finding_1_decompose_compares_the_all_group_and_counts_per_group():
    rng = np.random.default_rng(4)
    runs = []
    for s, mu in (("base", 40.0), ("new", 40.3)):
        for src in ("all", "init", "data_order", "augmentation", "nondeterminism"):
            runs += [
                Run(s, r, mu + 0.2 * rng.standard_normal(), src, r, f"{s}-{src}-{r}")
                for r in range(4)
            ]
    res = analyze(runs, paired=False)
    (c,) = res.comparisons
    assert (c.n_a, c.n_b) == (4, 4)  # the all group, not 16 pooled runs
    a = [r.value for r in runs if r.setting == "new" and r.source == "all"]
    b = [r.value for r in runs if r.setting == "base" and r.source == "all"]
    assert c.p_welch == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert res.power.df == 6 and "all-sources" in res.power.sigma_source
    assert "12 seeds" not in " ".join(conclusions(res))
    # without an all group: no comparison, planning from the additive total, labelled
    res = analyze([r for r in runs if r.source != "all"])
    assert res.comparisons == () and "additive" in res.power.sigma_source
    assert any("no `all` group" in n for n in res.notes)


def test_finding_2_components_are_net_of_nondeterminism():
    init = [40.0, 40.3, 39.8, 40.2]
    nd = [40.0, 40.1, 39.9, 40.05]
    runs = table({"x": init}, source="init") + [
        Run("x", None, v, "nondeterminism", r, f"nd{r}") for r, v in enumerate(nd)
    ]
    res = analyze(runs, min_runs=0)
    comp = {c.source: c for c in res.components}
    assert comp["init"].variance == pytest.approx(np.var(init, ddof=1) - np.var(nd, ddof=1))
    assert comp["init"].method == "mls"
    assert comp["nondeterminism"].variance == pytest.approx(np.var(nd, ddof=1))


def test_finding_3_no_unpaired_se_is_subtracted_from_the_seed_std():
    res = analyze(table({"a": [40.0, 40.2, 39.9], "b": [40.1, 40.4, 40.0]}))
    blob = json.dumps(analysis_json(res))
    assert "seed_std_excess" not in blob and "noise_ratio" not in blob


def test_finding_4_new_images_interval_averages_every_seed_on_shared_draws():
    rng = np.random.default_rng(6)
    draws = rng.multinomial(50, np.full(50, 1 / 50), size=200)
    runs, reps = [], {}
    for s, mu in (("b", 40.0), ("a", 40.5)):
        for r in range(3):
            per_image = mu + 0.2 * rng.standard_normal() + rng.standard_normal(50)
            runs.append(Run(s, r, float(per_image.mean()), "all", r, f"{s}{r}"))
            reps[f"{s}{r}"] = draws @ per_image / 50
    (c,) = analyze(runs, paired=False, image_replicates=reps).comparisons
    mean_a = np.mean([reps[f"a{r}"] for r in range(3)], axis=0)
    mean_b = np.mean([reps[f"b{r}"] for r in range(3)], axis=0)
    image_var = np.var(mean_a - mean_b, ddof=1)
    assert c.new_images.image_se == pytest.approx(math.sqrt(image_var))
    assert c.new_images.se == pytest.approx(math.sqrt(c.se**2 + image_var))
    assert c.new_images.se > c.se  # the image-sampling term adds to the seed noise


def test_finding_5_superiority_interval_is_newcombe_never_1_to_1():
    res = analyze(table({"b": [1.0, 2.0, 3.0, 4.0], "a": [5.0, 6.0, 7.0, 8.0]}))
    (c,) = res.comparisons
    assert c.p_superiority == 1.0
    assert c.p_superiority_ci.low == pytest.approx(0.583, abs=0.002)
    assert "chance that a run with A scores higher than a run with B" in to_markdown(res)


def test_finding_6_mann_whitney_handles_ties():
    a, b = [0.12, 0.15, 0.15, 0.18], [0.10, 0.12, 0.12, 0.15]
    (c,) = analyze(table({"b": b, "a": a})).comparisons
    ref = stats.mannwhitneyu(a, b, method=stats.PermutationMethod(n_resamples=np.inf)).pvalue
    assert c.p_mann_whitney == pytest.approx(ref)
    assert c.p_mann_whitney != pytest.approx(stats.mannwhitneyu(a, b, method="exact").pvalue)


def test_finding_7_planning_has_no_nan_when_power_is_near_one():
    res = analyze(table({"b": [40.0, 40.001, 40.002], "a": [45.0, 45.001, 45.003]}))
    assert res.power.seeds_per_arm_80 == 2 and math.isfinite(res.power.mde_80)
    json.dumps(analysis_json(res), allow_nan=False)


def test_finding_8_levels_derive_from_alpha():
    res = analyze(table({"b": [40.0, 40.2, 39.9, 40.1], "a": [40.3, 40.1, 40.4, 40.2]}), alpha=0.1)
    text = " ".join(conclusions(res)) + to_markdown(res)
    assert "95%" not in text and "90% CI" in text
    (c,) = res.comparisons
    ci = stats.ttest_ind(
        [40.3, 40.1, 40.4, 40.2], [40.0, 40.2, 39.9, 40.1], equal_var=False
    ).confidence_interval(0.9)
    assert (c.ci.low, c.ci.high) == pytest.approx((ci.low, ci.high))


def test_finding_9_verdict_never_disagrees_with_the_printed_interval():
    rng = np.random.default_rng(9)
    for _ in range(200):
        vals = {
            f"s{i}": list(40 + rng.uniform(0, 0.4) * i + 0.2 * rng.standard_normal(4))
            for i in range(3)
        }
        for c in analyze(table(vals)).comparisons:
            excludes = c.ci_simultaneous.low > 0 or c.ci_simultaneous.high < 0
            assert (c.verdict == "different") == excludes


def test_finding_10_three_verdicts_and_their_wording():
    different = analyze(table({"b": [40.0, 40.1, 39.9, 40.0], "a": [41.0, 41.1, 40.9, 41.0]}))
    equivalent = analyze(table({"b": [40.0, 40.01, 39.99, 40.0], "a": [40.0, 40.02, 39.99, 40.01]}))
    undecided = analyze(table({"b": [40.0, 40.5, 39.5, 40.2], "a": [40.2, 40.9, 39.8, 40.1]}))
    assert different.comparisons[0].verdict == "different"
    assert equivalent.comparisons[0].verdict == "equivalent"
    assert undecided.comparisons[0].verdict == "undecided"
    t = " ".join(conclusions(different))
    assert "distinguishable from seed noise at alpha 0.05" in t and "real difference" not in t
    assert "equivalent within +/- 0.3" in " ".join(conclusions(equivalent))
    t = " ".join(conclusions(undecided))
    assert "undecided: the CI still includes effects up to" in t
    assert (
        "smallest effect detectable at 80% power" in t and "seeds per setting would decide it" in t
    )


def test_finding_11_below_20_runs_the_mean_interval_is_t_and_says_why():
    res = analyze(table({"b": [40.0, 40.2, 39.9, 40.1, 40.0, 40.3, 39.8, 40.1]}))
    s = res.settings[0].summary
    assert s.mean_ci_method == "t" and s.bootstrap_ci is None
    assert "bootstrap not used: n = 8 < 20" in to_markdown(res)


def test_bad_tables_get_one_line():
    with pytest.raises(TableError, match="setting 'b' has 1 finished run"):
        analyze(table({"a": [1.0, 2.0], "b": [1.0]}))
    with pytest.raises(TableError, match="repeat setting 'a', seed 0, source 'all'"):
        analyze([Run("a", 0, 1.0), Run("a", 0, 2.0), Run("a", 1, 2.0)])
    with pytest.raises(ValueError, match="baseline 'x' is not a setting"):
        analyze(table({"a": [1.0, 2.0], "b": [1.0, 3.0]}), baseline="x")

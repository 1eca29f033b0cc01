"""The study report against scipy and hand computation, on hand-made result rows."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from sparse_rcnn.platform.stats.power import seeds_per_arm
from sparse_rcnn.platform.stats.study_report import analyze, pooled_sigma, to_markdown


def rows_for(values: dict[str, list[float]], source: str = "all") -> list[dict]:
    rows = []
    for i, (label, vals) in enumerate(values.items()):
        for r, v in enumerate(vals):
            rows.append(
                {
                    "trial_key": f"s{i}-{source}-r{r}",
                    "setting": i,
                    "setting_label": label,
                    "source": source,
                    "replicate": r,
                    "status": "ok" if math.isfinite(v) else "failed",
                    "error": None if math.isfinite(v) else "boom",
                    "AP": v,
                }
            )
    return rows


A = [0.301, 0.305, 0.298, 0.303, 0.300]  # COCO fractions
B = [0.306, 0.309, 0.304, 0.311, 0.305]


def test_two_settings_match_scipy():
    r = analyze(rows_for({"lr=1": A, "lr=2": B}), effect_size=0.3, alpha=0.05)
    a, b = 100 * np.array(A), 100 * np.array(B)
    s0, s1 = r["settings"]
    assert s0["summary"]["mean"] == pytest.approx(a.mean())
    assert s1["summary"]["std"] == pytest.approx(b.std(ddof=1))
    (c,) = r["comparisons"]
    assert (c["a"], c["b"]) == ("lr=2", "lr=1")
    welch = stats.ttest_ind(b, a, equal_var=False)
    assert c["comparison"]["welch_p"] == pytest.approx(welch.pvalue)
    assert c["comparison"]["difference"] == pytest.approx(b.mean() - a.mean())
    mw = stats.mannwhitneyu(b, a, method="exact").pvalue
    assert c["comparison"]["mann_whitney_p"] == pytest.approx(mw)
    sigma = math.sqrt((a.var(ddof=1) * 4 + b.var(ddof=1) * 4) / 8)
    assert r["power"]["sigma"] == pytest.approx(sigma)
    assert r["power"]["df"] == 8
    assert r["power"]["seeds_per_arm_80"] == seeds_per_arm(0.3, sigma, 0.8, 0.05)
    assert r["power"]["n_current"] == 5
    text = " ".join(r["conclusions"])
    assert f"sigma = {sigma:.2f} AP" in text
    assert f"you need {r['power']['seeds_per_arm_80']} seeds per setting" in text
    json.dumps(r, allow_nan=False)  # strictly JSON
    md = to_markdown(r)
    assert "| lr=2 | lr=1 |" in md and "## Power" in md


def test_a_failed_trial_is_excluded_listed_and_warned():
    r = analyze(rows_for({"x": [0.30, 0.31, float("nan"), 0.32], "y": [0.3, 0.31, 0.29]}))
    assert r["trials"]["ok"] == 6 and [f["trial"] for f in r["trials"]["failed"]] == ["s0-all-r2"]
    s0 = r["settings"][0]["summary"]
    assert s0["n"] == 3 and s0["n_nan"] == 1
    assert s0["mean"] == pytest.approx(31.0)  # never averaged with the NaN
    assert any("NaN" in w for w in r["warnings"])
    assert r["conclusions"][0].startswith("1 trial(s) failed")
    assert "(+1 failed)" in to_markdown(r)


def test_more_than_two_settings_are_holm_adjusted():
    rng = np.random.default_rng(0)
    vals = {f"s{i}": list(0.3 + 0.002 * i + 0.003 * rng.standard_normal(4)) for i in range(4)}
    r = analyze(rows_for(vals))
    ps = [c["comparison"]["welch_p"] for c in r["comparisons"]]
    order = np.argsort(ps)  # Holm by hand: sorted p times (m - rank), running max, cap 1
    holm = np.empty(3)
    holm[order] = np.maximum.accumulate([min(1.0, (3 - k) * ps[i]) for k, i in enumerate(order)])
    assert [c["welch_p_holm"] for c in r["comparisons"]] == pytest.approx(list(holm))


def test_edge_cases_single_seed_and_identical_values():
    r = analyze(rows_for({"a": [0.3], "b": [0.3]}))
    assert r["power"]["sigma"] is None
    assert "sigma is undefined" in r["conclusions"][0]
    r = analyze(rows_for({"a": [0.3, 0.3, 0.3]}))
    assert r["power"]["sigma"] == 0.0
    assert any("identical" in c for c in r["conclusions"])


def test_decompose_design_reports_each_source():
    rows = []
    for source, vals in {
        "init": [0.30, 0.32, 0.31],
        "data_order": [0.30, 0.30, 0.31],
        "augmentation": [0.31, 0.31, 0.31],
        "nondeterminism": [0.3, 0.3, 0.3],
    }.items():
        rows += rows_for({"base": vals}, source)
    r = analyze(rows)
    assert r["design"] == "decompose"
    comps = {c["source"]: c for c in r["settings"][0]["decomposition"]["components"]}
    assert comps["init"]["std"] == pytest.approx(np.std([30, 32, 31], ddof=1))
    assert comps["nondeterminism"]["std"] == 0.0
    assert "Variance components" in to_markdown(r)


def test_test_set_noise_and_paired_bootstrap_are_reported_in_points():
    rows = rows_for({"a": A, "b": B})
    se = {row["trial_key"]: 0.004 for row in rows}
    paired = [{"a": "b", "b": "a", "diff": 0.005, "ci_low": -0.001, "ci_high": 0.011,
               "prob_positive": 0.9, "trials": ["s1-all-r0", "s0-all-r0"]}]  # fmt: skip
    r = analyze(rows, test_se=se, paired=paired)
    noise = r["settings"][0]["test_set_noise"]
    assert noise["mean_test_se"] == pytest.approx(0.4)
    assert noise["seed_std"] == pytest.approx(100 * np.std(A, ddof=1))
    pb = r["comparisons"][0]["paired_image_bootstrap"]
    assert (pb["diff"], pb["ci_low"], pb["ci_high"]) == pytest.approx((0.5, -0.1, 1.1))
    assert pb["prob_a_better"] == pytest.approx(0.9)


def test_pooled_sigma_by_hand():
    assert pooled_sigma([[1.0, 3.0], [2.0, 2.0, 5.0]]) == pytest.approx((math.sqrt((2 + 6) / 3), 3))
    assert math.isnan(pooled_sigma([[1.0]])[0])


def test_an_ap_of_zero_is_a_value_not_a_failure():
    r = analyze(rows_for({"a": [0.0, 0.0], "b": [0.0, 0.01]}))
    assert r["trials"]["ok"] == 4 and r["trials"]["failed"] == []
    assert r["settings"][1]["summary"]["mean"] == pytest.approx(0.5)


def test_each_trial_is_listed_with_its_test_set_ci():
    rows = rows_for({"a": A[:2]})
    r = analyze(rows, test_se={"s0-all-r0": 0.004}, test_ci={"s0-all-r0": (0.295, 0.31)})
    t0, t1 = r["per_trial"]
    assert (t0["trial"], t0["value"], t0["test_se"]) == (
        "s0-all-r0",
        pytest.approx(30.1),
        pytest.approx(0.4),
    )
    assert t0["test_ci"] == pytest.approx([29.5, 31.0])
    assert t1["test_ci"] is None and t1["test_se"] is None
    assert "| s0-all-r0 | a | all |" in to_markdown(r)

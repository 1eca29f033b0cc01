"""Planning from the seed-to-seed sigma: seeds per setting at the estimate, at sigma's one-sided
80 % upper bound and at its interval's top; the smallest detectable effect at the current n;
and the paired plan from the std of per-replicate differences."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from sparse_rcnn.platform.stats.comparison import (
    PLANNING_POWER,
    pairs_by_replicate,
    pooled_sigma,
    seeds_or_none,
)
from sparse_rcnn.platform.stats.components import Decomposition
from sparse_rcnn.platform.stats.power import minimum_detectable_effect
from sparse_rcnn.platform.stats.results import PowerResult, SettingResult
from sparse_rcnn.platform.stats.summary import sigma_interval
from sparse_rcnn.platform.stats.table import Run

SIGMA_UPPER_LEVEL = 0.8  # one-sided upper bound of sigma used for a cautious plan


def plan(
    settings: Sequence[SettingResult],
    decs: Mapping[str, Decomposition],
    mains: Mapping[str, list[Run]],
    labels: list[str],
    baseline: str,
    alpha: float,
    effect_size: float,
    paired: bool,
) -> PowerResult:
    confidence = 1.0 - alpha
    groups = [np.array(s.summary.values) for s in settings if s.summary.n]
    sigma, df = pooled_sigma(groups)
    source = "pooled std of the settings' all-sources runs"
    if df == 0 and decs:
        totals = [d.total.variance for d in decs.values() if d.total is not None]
        ns = [d.total.n for d in decs.values() if d.total is not None]
        if totals:
            sigma = math.sqrt(float(np.mean(totals)))
            df = int(sum(ns) - len(ns))
            source = "additive total of the source groups (no `all` group; assumes additivity)"
    n_current = min((s.summary.n for s in settings if s.summary.n), default=0)
    ci = sigma_interval(sigma, df + 1, confidence) if df else None
    upper = sigma * math.sqrt(df / stats.chi2.ppf(1.0 - SIGMA_UPPER_LEVEL, df)) if df else math.nan
    mde = math.nan
    if math.isfinite(sigma) and sigma > 0 and n_current >= 2:
        mde = minimum_detectable_effect(n_current, sigma, PLANNING_POWER, alpha)
    sd, sd_df = math.nan, 0
    if paired:
        diffs = []
        for s in labels:
            if s == baseline:
                continue
            pr = pairs_by_replicate(mains[s], mains[baseline])
            if len(pr) >= 2:
                diffs.append(np.array([a - b for a, b in pr]))
        sd, sd_df = pooled_sigma(diffs)
    return PowerResult(
        sigma=sigma,
        df=df,
        sigma_ci=ci,
        sigma_upper=upper,
        sigma_source=source,
        n_current=n_current,
        seeds_per_arm_80=seeds_or_none(effect_size, sigma, alpha, 0.8, False),
        seeds_per_arm_90=seeds_or_none(effect_size, sigma, alpha, 0.9, False),
        seeds_per_arm_80_upper=seeds_or_none(effect_size, upper, alpha, 0.8, False),
        seeds_per_arm_80_ci_high=seeds_or_none(
            effect_size, ci.high if ci else math.nan, alpha, 0.8, False
        ),
        mde_80=mde,
        sigma_diff=sd,
        sigma_diff_df=sd_df,
        seeds_paired_80=seeds_or_none(effect_size, sd, alpha, 0.8, True),
    )

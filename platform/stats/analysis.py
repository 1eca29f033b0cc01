"""The analysis of a results table: per-setting summaries, comparisons with verdicts, variance
components and planning, as typed results. One code path for ``sparse-rcnn analyze`` and the
study report; ``render`` turns an ``Analysis`` into conclusions and Markdown.

Which runs answer which question:

- A setting's summary, its comparisons and the planning use its ``all`` group (every seed
  varied). In a decompose design the one-source groups share their fixed seeds: they are not a
  sample of the all-sources distribution and are never pooled into a comparison (pooling them
  covered the true difference in 42 % of simulated studies). Without an ``all`` group a
  decompose design has no comparison, and planning uses the additive total variance, labelled.
- Pairing: when runs carry a ``replicate`` and replicate r of two settings used the same seeds
  (``pairing: replicate``, the default of a study), the primary analysis is on per-replicate
  differences (paired t interval; exact Wilcoxon signed-rank and sign-flip p). Otherwise Welch.
- With m > 1 comparisons against the baseline, each verdict uses the simultaneous interval at
  level 1 - alpha/m (Bonferroni), printed as ``ci_simultaneous`` beside the Holm-adjusted p, so
  a verdict never disagrees with the interval printed beside it.
- Verdicts: ``different`` (the simultaneous interval excludes 0), ``equivalent`` (two one-sided
  tests at alpha/m within +/- ``effect_size``), else ``undecided`` (with the effects the
  interval still includes, the smallest detectable effect at this n and the seeds that would
  decide it).
- Test-set noise (``image_replicates``, study reports only): the difference for new images
  from the same distribution adds the paired image-bootstrap variance of the seed-averaged
  difference to the seed variance; the share of each setting's seed variance that is specific
  to this validation set comes from paired image bootstraps of its runs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from sparse_rcnn.platform.stats import compare as cmp
from sparse_rcnn.platform.stats.components import (
    ALL,
    Decomposition,
    ValidationSetShare,
    decompose,
    validation_set_share,
)
from sparse_rcnn.platform.stats.power import minimum_detectable_effect, seeds_per_arm
from sparse_rcnn.platform.stats.summary import Interval, SeedSummary, sigma_interval, summarize
from sparse_rcnn.platform.stats.table import Run, check_runs

PLANNING_POWER = 0.8
SIGMA_UPPER_LEVEL = 0.8  # one-sided upper bound of sigma used for a cautious plan


@dataclass(frozen=True)
class SettingResult:
    """One setting over its main group's runs (``summary``), with what the runs were."""

    setting: str
    group: str  # "all", or "(none)" for a decompose design without an all group
    runs: tuple[str, ...]
    summary: SeedSummary
    validation_set: ValidationSetShare | None = None


@dataclass(frozen=True)
class NewImages:
    """A difference for new images from the same distribution (seed + image-sampling noise).

    ``image_se``: bootstrap SE of the seed-averaged difference over paired image draws;
    ``se = sqrt(seed_se^2 + image_se^2)``; ``ci`` on the Welch-Satterthwaite df of the seed
    part (the bootstrap part counts as known).
    """

    diff: float
    seed_se: float
    image_se: float
    se: float
    df: float
    ci: Interval | None


@dataclass(frozen=True)
class ComparisonResult:
    """Setting ``a`` against the baseline ``b`` (a minus b); formulas in the module doc."""

    a: str
    b: str
    design: str  # "paired" or "unpaired"
    n_a: int
    n_b: int
    n_pairs: int
    diff: float
    se: float
    df: float
    ci: Interval | None
    ci_simultaneous: Interval | None
    p: float  # the primary test's p (paired t or Welch)
    p_adjusted: float  # Holm over the m comparisons (= p when m = 1)
    p_welch: float
    p_mann_whitney: float
    p_wilcoxon: float
    p_sign_flip: float
    p_equivalence: float
    p_superiority: float
    p_superiority_ci: Interval | None
    hedges_g: float
    verdict: str  # different | equivalent | undecided
    still_includes: float  # max |effect| inside ci_simultaneous
    mde_80: float
    seeds_to_decide: int | None
    correlation: float
    correlation_ci: Interval | None
    sigma_diff: float
    seeds_paired_80: int | None
    seeds_unpaired_80: int | None
    notes: tuple[str, ...]
    new_images: NewImages | None = None


@dataclass(frozen=True)
class ComponentResult:
    """One variance component of one setting (metric units squared), truncated at 0."""

    setting: str
    source: str
    n: int
    variance: float
    ci: Interval | None
    method: str
    note: str | None


@dataclass(frozen=True)
class PowerResult:
    """Planning from the seed-to-seed sigma (pooled over settings' main groups).

    ``sigma`` on ``df`` degrees of freedom with its two-sided CI; ``sigma_upper`` its one-sided
    80 % upper bound. Seeds per setting (unpaired two-sample t at alpha, two-sided) at the point
    estimate (``seeds_per_arm_80/90``), at ``sigma_upper`` and at the CI top; ``mde_80`` at the
    smallest current n. ``sigma_source`` says where sigma came from; ``sigma_diff`` and
    ``seeds_paired_80`` plan a paired design from the pooled std of per-replicate differences.
    """

    sigma: float
    df: int
    sigma_ci: Interval | None
    sigma_upper: float
    sigma_source: str
    n_current: int
    seeds_per_arm_80: int | None
    seeds_per_arm_90: int | None
    seeds_per_arm_80_upper: int | None
    seeds_per_arm_80_ci_high: int | None
    mde_80: float
    sigma_diff: float
    sigma_diff_df: int
    seeds_paired_80: int | None


@dataclass(frozen=True)
class Analysis:
    """Everything ``render`` prints; ``to_json`` is the documented JSON."""

    metric: str
    unit: str
    alpha: float
    effect_size: float
    design: str  # "all" or "decompose"
    pairing: str  # "paired" or "unpaired"
    baseline: str | None
    runs: tuple[Run, ...]
    settings: tuple[SettingResult, ...]
    comparisons: tuple[ComparisonResult, ...]
    components: tuple[ComponentResult, ...]
    decompositions: Mapping[str, Decomposition]
    power: PowerResult
    failed: tuple[Run, ...]
    image_se: Mapping[str, float] = field(default_factory=dict)
    image_ci: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    run_word: str = "run"  # "trial" in a study report

    @property
    def confidence(self) -> float:
        return 1.0 - self.alpha

    @property
    def m(self) -> int:
        return len(self.comparisons)

    def to_json(self) -> dict:
        from sparse_rcnn.platform.stats.render import analysis_json

        return analysis_json(self)


def _values(runs: Sequence[Run]) -> np.ndarray:
    return np.array([r.value for r in runs if not r.failed], dtype=np.float64)


def _main_group(runs: Sequence[Run], design: str) -> tuple[str, list[Run]]:
    if design == "all":
        return "all", list(runs)
    mine = [r for r in runs if r.source == ALL]
    return ("all", mine) if mine else ("(none)", [])


def pooled_sigma(groups: Sequence[np.ndarray]) -> tuple[float, int]:
    """``(sqrt(sum((n_i - 1) s_i^2) / sum(n_i - 1)), sum(n_i - 1))`` over groups of n >= 2;
    ``(nan, 0)`` when there are none."""
    ss, df = 0.0, 0
    for x in groups:
        if x.size >= 2:
            ss += float(np.sum((x - x.mean()) ** 2))
            df += x.size - 1
    return (math.sqrt(ss / df), df) if df else (math.nan, 0)


def _seeds(effect: float, sigma: float, alpha: float, power: float, paired: bool) -> int | None:
    if not (math.isfinite(sigma) and sigma > 0):
        return None
    try:
        return seeds_per_arm(effect, sigma, power, alpha, paired=paired)
    except ValueError:
        return None


def _pairs(a: Sequence[Run], b: Sequence[Run]) -> list[tuple[float, float]]:
    """(a, b) values of replicates present and finished in both settings, by replicate."""
    bmap = {r.replicate: r.value for r in b if r.replicate is not None and not r.failed}
    return [
        (r.value, bmap[r.replicate])
        for r in sorted(a, key=lambda r: r.replicate if r.replicate is not None else -1)
        if r.replicate is not None and not r.failed and r.replicate in bmap
    ]


def correlation_interval(
    x: np.ndarray, y: np.ndarray, confidence: float
) -> tuple[float, Interval | None]:
    """Pearson r of replicate values across two settings with a Fisher-z interval (n >= 4)."""
    n = x.size
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, None
    r = float(np.corrcoef(x, y)[0, 1])
    if n < 4 or abs(r) >= 1:
        return r, None
    z = stats.norm.ppf(0.5 + confidence / 2) / math.sqrt(n - 3)
    return r, Interval(math.tanh(math.atanh(r) - z), math.tanh(math.atanh(r) + z), confidence)


def _compare(
    a_name: str,
    a_runs: Sequence[Run],
    b_name: str,
    b_runs: Sequence[Run],
    *,
    paired: bool,
    alpha: float,
    m: int,
    effect_size: float,
) -> dict:
    x, y = _values(a_runs), _values(b_runs)
    confidence = 1.0 - alpha
    sim = 1.0 - alpha / m
    notes: list[str] = []
    pairs = _pairs(a_runs, b_runs) if paired else []
    design = "paired" if paired and len(pairs) >= 2 else "unpaired"
    if paired and design == "unpaired":
        notes.append("fewer than 2 replicates finished in both settings: unpaired analysis")
    welch = cmp.welch(x, y, confidence)
    px = np.array([p[0] for p in pairs])
    py = np.array([p[1] for p in pairs])
    d = px - py
    if design == "paired":
        if len(pairs) < min(x.size, y.size):
            notes.append(f"{min(x.size, y.size) - len(pairs)} run(s) without a partner left out")
        prim = cmp.paired_t(d, confidence)
        prim_sim = cmp.paired_t(d, sim)
        eq_ci = cmp.paired_t(d, 1.0 - 2.0 * alpha / m)
        n_eff = d.size
        sigma_design = float(np.std(d, ddof=1))
    else:
        prim = welch
        prim_sim = cmp.welch(x, y, sim)
        eq_ci = cmp.welch(x, y, 1.0 - 2.0 * alpha / m)
        n_eff = min(x.size, y.size)
        sigma_design = pooled_sigma([x, y])[0]
    p_eq = cmp.tost_p(prim.difference, prim.se, prim.df, effect_size)
    ci_sim = prim_sim.ci
    if ci_sim is not None and (ci_sim.low > 0 or ci_sim.high < 0):
        verdict = "different"
        if eq_ci.ci is not None and -effect_size < eq_ci.ci.low and eq_ci.ci.high < effect_size:
            notes.append(
                f"different from 0 but smaller than the effect of interest {effect_size:g}"
            )
    elif math.isfinite(p_eq) and p_eq <= alpha / m:
        verdict = "equivalent"
    else:
        verdict = "undecided"
    still = max(abs(ci_sim.low), abs(ci_sim.high)) if ci_sim is not None else math.nan
    mde = math.nan
    if math.isfinite(sigma_design) and sigma_design > 0 and n_eff >= 2:
        mde = minimum_detectable_effect(
            n_eff, sigma_design, PLANNING_POWER, alpha / m, paired=design == "paired"
        )
    seeds = _seeds(effect_size, sigma_design, alpha / m, PLANNING_POWER, design == "paired")
    p_mw = cmp.mann_whitney_p(x, y) if x.size and y.size else math.nan
    p_wil = cmp.wilcoxon_p(d) if design == "paired" else math.nan
    p_flip = cmp.sign_flip_p(d) if design == "paired" else math.nan
    if design == "paired":
        floor = m * cmp.smallest_signed_rank_p(d.size)
        if floor > alpha:
            notes.append(
                f"with {d.size} pairs and {m} comparison(s) no adjusted signed-rank or sign-flip "
                f"p can reach alpha {alpha:g} (smallest possible {floor:.3g})"
            )
    floor = m * cmp.smallest_rank_p(x.size, y.size)
    if floor > alpha:
        notes.append(
            f"with {x.size} vs {y.size} runs and {m} comparison(s) no adjusted Mann-Whitney p "
            f"can reach alpha {alpha:g} (smallest possible {floor:.3g})"
        )
    ps = float(cmp.probability_of_superiority(x, y)) if x.size and y.size else math.nan
    ps_ci = None
    if x.size and y.size and math.isfinite(ps):
        lo, hi = cmp.superiority_interval(ps, x.size, y.size, confidence)
        ps_ci = Interval(float(lo), float(hi), confidence)
    rho, rho_ci = (
        correlation_interval(px, py, confidence) if design == "paired" else (math.nan, None)
    )
    s_pool = pooled_sigma([x, y])[0]
    s_d = float(np.std(d, ddof=1)) if d.size >= 2 else math.nan
    return dict(
        a=a_name,
        b=b_name,
        design=design,
        n_a=int(x.size),
        n_b=int(y.size),
        n_pairs=int(d.size),
        diff=prim.difference,
        se=prim.se,
        df=prim.df,
        ci=prim.ci,
        ci_simultaneous=ci_sim,
        p=prim.p,
        p_welch=welch.p,
        p_mann_whitney=p_mw,
        p_wilcoxon=p_wil,
        p_sign_flip=p_flip,
        p_equivalence=p_eq,
        p_superiority=ps,
        p_superiority_ci=ps_ci,
        hedges_g=cmp.hedges_g(x, y),
        verdict=verdict,
        still_includes=still,
        mde_80=mde,
        seeds_to_decide=seeds,
        correlation=rho,
        correlation_ci=rho_ci,
        sigma_diff=s_d,
        seeds_paired_80=_seeds(effect_size, s_d, alpha / m, PLANNING_POWER, True),
        seeds_unpaired_80=_seeds(effect_size, s_pool, alpha / m, PLANNING_POWER, False),
        notes=tuple(notes),
    )


def _new_images(
    c: dict, a_keys: Sequence[str], b_keys: Sequence[str], reps: Mapping[str, np.ndarray]
) -> NewImages | None:
    """Seed noise plus the paired image-bootstrap variance of the seed-averaged difference."""
    ka = [k for k in a_keys if k in reps]
    kb = [k for k in b_keys if k in reps]
    if not ka or not kb or not math.isfinite(c["se"]):
        return None
    mean_a = np.mean([reps[k] for k in ka], axis=0)
    mean_b = np.mean([reps[k] for k in kb], axis=0)
    diff = mean_a - mean_b
    diff = diff[np.isfinite(diff)]
    if diff.size < 2:
        return None
    image_se = float(np.std(diff, ddof=1))
    se = math.sqrt(c["se"] ** 2 + image_se**2)
    # Welch-Satterthwaite with the bootstrap term on infinite df.
    df = c["df"] * (se / c["se"]) ** 4 if c["se"] > 0 else math.inf
    q = float(stats.t.ppf(0.5 + (1 - c["alpha"]) / 2, df))
    ci = Interval(c["diff"] - q * se, c["diff"] + q * se, 1 - c["alpha"])
    return NewImages(c["diff"], c["se"], image_se, se, df, ci)


def analyze(
    runs: Sequence[Run],
    *,
    metric: str = "value",
    unit: str = "",
    alpha: float = 0.05,
    effect_size: float = 0.3,
    baseline: str | None = None,
    paired: bool | None = None,
    image_replicates: Mapping[str, np.ndarray] | None = None,
    name: str = "table",
    min_runs: int = 2,
    run_word: str = "run",
) -> Analysis:
    """Analyse runs (see the module doc). ``paired`` None: paired when runs carry replicates.

    ``image_replicates`` maps a run's ``key`` to its (B,) image-bootstrap replicates of the
    metric on image draws shared by every run (same units as ``value``).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not (math.isfinite(effect_size) and effect_size > 0):
        raise ValueError(f"effect size must be a positive number, got {effect_size}")
    check_runs(runs, name, min_runs=min_runs)
    confidence = 1.0 - alpha
    reps = dict(image_replicates or {})
    labels = list(dict.fromkeys(r.setting for r in runs))
    if baseline is None:
        baseline = labels[0]
    elif baseline not in labels:
        raise ValueError(f"baseline {baseline!r} is not a setting of {name}: {', '.join(labels)}")
    sources = {r.source for r in runs}
    design = "all" if sources == {ALL} else "decompose"
    has_rep = all(r.replicate is not None for r in runs if r.source == ALL)
    is_paired = has_rep if paired is None else bool(paired and has_rep)
    notes: list[str] = []
    if paired and not has_rep:
        notes.append("paired analysis asked for, but the runs carry no replicate: unpaired")
    caught_msgs: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        by_setting = {s: [r for r in runs if r.setting == s] for s in labels}
        settings: list[SettingResult] = []
        mains: dict[str, list[Run]] = {}
        components: list[ComponentResult] = []
        decs: dict[str, Decomposition] = {}
        for s in labels:
            group, main = _main_group(by_setting[s], design)
            mains[s] = main
            values = np.array([r.value for r in main], dtype=np.float64)
            summary = summarize(values, confidence=confidence)
            share = None
            keys = [r.key for r in main if not r.failed and r.key in reps]
            if len(keys) >= 2:
                share = validation_set_share(
                    np.array([r.value for r in main if not r.failed and r.key in reps]),
                    np.stack([reps[k] for k in keys]),
                )
            settings.append(SettingResult(s, group, tuple(r.key for r in main), summary, share))
            if design == "decompose":
                groups = {
                    src: _values([r for r in by_setting[s] if r.source == src])
                    for src in dict.fromkeys(r.source for r in by_setting[s])
                }
                dec = decompose(groups, confidence=confidence)
                decs[s] = dec
                for c in (*dec.components, *([dec.total] if dec.total else [])):
                    components.append(
                        ComponentResult(s, c.source, c.n, c.variance, c.ci, c.method, c.note)
                    )
        power = _power(settings, decs, mains, labels, baseline, alpha, effect_size, is_paired)
        comparisons = _comparisons(
            mains, labels, baseline, alpha, effect_size, is_paired, reps, design, notes
        )
    caught_msgs = [str(w.message) for w in caught]
    return Analysis(
        metric=metric,
        unit=unit,
        alpha=alpha,
        effect_size=effect_size,
        design=design,
        pairing="paired" if is_paired else "unpaired",
        baseline=baseline,
        runs=tuple(runs),
        settings=tuple(settings),
        comparisons=comparisons,
        components=tuple(components),
        decompositions=decs,
        power=power,
        failed=tuple(r for r in runs if r.failed),
        image_se={
            k: float(np.nanstd(v, ddof=1)) for k, v in reps.items() if np.isfinite(v).sum() >= 2
        },
        image_ci={
            k: (
                float(np.nanpercentile(v, 100 * alpha / 2)),
                float(np.nanpercentile(v, 100 * (1 - alpha / 2))),
            )
            for k, v in reps.items()
            if np.isfinite(v).any()
        },  # fmt: skip
        notes=tuple(notes),
        warnings=tuple(sorted(set(caught_msgs))),
        run_word=run_word,
    )


def _comparisons(
    mains: Mapping[str, list[Run]],
    labels: list[str],
    baseline: str,
    alpha: float,
    effect_size: float,
    paired: bool,
    reps: Mapping[str, np.ndarray],
    design: str,
    notes: list[str],
) -> tuple[ComparisonResult, ...]:
    others = [s for s in labels if s != baseline]
    if not others:
        return ()
    if design == "decompose" and not mains[baseline]:
        notes.append(
            "no comparison: this decompose design has no `all` group (its one-source groups "
            "share fixed seeds and are not a sample of seeds); add `all` to sources"
        )
        return ()
    m = len(others)
    raw = [
        _compare(
            s, mains[s], baseline, mains[baseline],
            paired=paired, alpha=alpha, m=m, effect_size=effect_size,
        )
        for s in others
    ]  # fmt: skip
    adjusted = cmp.holm([c["p"] for c in raw])
    out = []
    for c, p_adj in zip(raw, adjusted, strict=True):
        c["alpha"] = alpha
        ni = _new_images(
            c,
            [r.key for r in mains[c["a"]] if not r.failed],
            [r.key for r in mains[baseline] if not r.failed],
            reps,
        )
        del c["alpha"]
        out.append(ComparisonResult(**c, p_adjusted=float(p_adj), new_images=ni))
    return tuple(out)


def _power(
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
            pr = _pairs(mains[s], mains[baseline])
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
        seeds_per_arm_80=_seeds(effect_size, sigma, alpha, 0.8, False),
        seeds_per_arm_90=_seeds(effect_size, sigma, alpha, 0.9, False),
        seeds_per_arm_80_upper=_seeds(effect_size, upper, alpha, 0.8, False),
        seeds_per_arm_80_ci_high=_seeds(
            effect_size, ci.high if ci else math.nan, alpha, 0.8, False
        ),
        mde_80=mde,
        sigma_diff=sd,
        sigma_diff_df=sd_df,
        seeds_paired_80=_seeds(effect_size, sd, alpha, 0.8, True),
    )

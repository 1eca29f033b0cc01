"""One setting against the baseline: the primary test (paired t on per-replicate differences,
or Welch), the simultaneous interval and verdict, rank tests, P(A > B), the correlation of
replicate effects, and the difference for new images; and the Holm loop over all settings.
Formulas and the reasons for each choice are in ``analysis``'s module doc."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from sparse_rcnn.platform.stats import compare as cmp
from sparse_rcnn.platform.stats.power import minimum_detectable_effect, seeds_per_arm
from sparse_rcnn.platform.stats.results import ComparisonResult, NewImages
from sparse_rcnn.platform.stats.summary import Interval
from sparse_rcnn.platform.stats.table import Run

PLANNING_POWER = 0.8


def finite(runs: Sequence[Run]) -> np.ndarray:
    return np.array([r.value for r in runs if not r.failed], dtype=np.float64)


def pooled_sigma(groups: Sequence[np.ndarray]) -> tuple[float, int]:
    """``(sqrt(sum((n_i - 1) s_i^2) / sum(n_i - 1)), sum(n_i - 1))`` over groups of n >= 2;
    ``(nan, 0)`` when there are none."""
    ss, df = 0.0, 0
    for x in groups:
        if x.size >= 2:
            ss += float(np.sum((x - x.mean()) ** 2))
            df += x.size - 1
    return (math.sqrt(ss / df), df) if df else (math.nan, 0)


def seeds_or_none(
    effect: float, sigma: float, alpha: float, power: float, paired: bool
) -> int | None:
    if not (math.isfinite(sigma) and sigma > 0):
        return None
    try:
        return seeds_per_arm(effect, sigma, power, alpha, paired=paired)
    except ValueError:
        return None


def pairs_by_replicate(a: Sequence[Run], b: Sequence[Run]) -> list[tuple[float, float]]:
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


@dataclass(frozen=True)
class _Primary:
    """The design's primary test at the three levels a comparison needs."""

    design: str  # paired | unpaired
    at_level: cmp.MeanDifference  # 1 - alpha
    simultaneous: cmp.MeanDifference  # 1 - alpha/m
    equivalence: cmp.MeanDifference  # 1 - 2 alpha/m (the TOST interval)
    n: int  # seeds per setting the test rests on
    sigma: float  # std of the differences (paired) or pooled std (unpaired)


def _primary(x: np.ndarray, y: np.ndarray, d: np.ndarray, paired: bool, alpha: float, m: int):
    if paired:

        def test(level: float) -> cmp.MeanDifference:
            return cmp.paired_t(d, level)

        n, sigma = d.size, float(np.std(d, ddof=1))
    else:

        def test(level: float) -> cmp.MeanDifference:
            return cmp.welch(x, y, level)

        n, sigma = min(x.size, y.size), pooled_sigma([x, y])[0]
    return _Primary(
        "paired" if paired else "unpaired",
        test(1.0 - alpha),
        test(1.0 - alpha / m),
        test(1.0 - 2.0 * alpha / m),
        n,
        sigma,
    )


def _verdict(prim: _Primary, p_eq: float, alpha: float, m: int, effect_size: float, notes: list):
    """different (simultaneous CI excludes 0) | equivalent (TOST at alpha/m) | undecided."""
    ci = prim.simultaneous.ci
    if ci is not None and (ci.low > 0 or ci.high < 0):
        eq = prim.equivalence.ci
        if eq is not None and -effect_size < eq.low and eq.high < effect_size:
            notes.append(
                f"different from 0 but smaller than the effect of interest {effect_size:g}"
            )
        return "different"
    if math.isfinite(p_eq) and p_eq <= alpha / m:
        return "equivalent"
    return "undecided"


def _rank_tests(x: np.ndarray, y: np.ndarray, d: np.ndarray, paired: bool, alpha: float, m: int,
                notes: list) -> tuple[float, float, float]:  # fmt: skip
    """Mann-Whitney (always), Wilcoxon and sign-flip (paired) p, and a note when with this n and
    m comparisons no adjusted p could reach alpha."""
    p_mw = cmp.mann_whitney_p(x, y) if x.size and y.size else math.nan
    p_wil = cmp.wilcoxon_p(d) if paired else math.nan
    p_flip = cmp.sign_flip_p(d) if paired else math.nan
    floor = m * cmp.smallest_signed_rank_p(d.size)
    if paired and floor > alpha:
        notes.append(
            f"with {d.size} pairs and {m} comparison(s) no adjusted signed-rank or sign-flip p "
            f"can reach alpha {alpha:g} (smallest possible {floor:.3g})"
        )
    floor = m * cmp.smallest_rank_p(x.size, y.size)
    if floor > alpha:
        notes.append(
            f"with {x.size} vs {y.size} runs and {m} comparison(s) no adjusted Mann-Whitney p "
            f"can reach alpha {alpha:g} (smallest possible {floor:.3g})"
        )
    return p_mw, p_wil, p_flip


def _superiority(x: np.ndarray, y: np.ndarray, confidence: float) -> tuple[float, Interval | None]:
    if not (x.size and y.size):
        return math.nan, None
    ps = float(cmp.probability_of_superiority(x, y))
    lo, hi = cmp.superiority_interval(ps, x.size, y.size, confidence)
    return ps, Interval(float(lo), float(hi), confidence)


def compare_settings(
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
    """Setting a against b (a minus b) as the fields of ``ComparisonResult`` (less p_adjusted
    and new_images, which need every comparison / the image replicates)."""
    x, y = finite(a_runs), finite(b_runs)
    confidence = 1.0 - alpha
    notes: list[str] = []
    pairs = pairs_by_replicate(a_runs, b_runs) if paired else []
    if paired and len(pairs) < 2:
        notes.append("fewer than 2 replicates finished in both settings: unpaired analysis")
    elif paired and len(pairs) < min(x.size, y.size):
        notes.append(f"{min(x.size, y.size) - len(pairs)} run(s) without a partner left out")
    px, py = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    d = px - py
    is_paired = paired and len(pairs) >= 2
    prim = _primary(x, y, d, is_paired, alpha, m)
    main = prim.at_level
    p_eq = cmp.tost_p(main.difference, main.se, main.df, effect_size)
    verdict = _verdict(prim, p_eq, alpha, m, effect_size, notes)
    ci_sim = prim.simultaneous.ci
    mde = math.nan
    if math.isfinite(prim.sigma) and prim.sigma > 0 and prim.n >= 2:
        mde = minimum_detectable_effect(
            prim.n, prim.sigma, PLANNING_POWER, alpha / m, paired=is_paired
        )
    p_mw, p_wil, p_flip = _rank_tests(x, y, d, is_paired, alpha, m, notes)
    ps, ps_ci = _superiority(x, y, confidence)
    rho, rho_ci = correlation_interval(px, py, confidence) if is_paired else (math.nan, None)
    s_d = float(np.std(d, ddof=1)) if d.size >= 2 else math.nan
    s_pool = pooled_sigma([x, y])[0]
    return dict(
        a=a_name,
        b=b_name,
        design=prim.design,
        n_a=int(x.size),
        n_b=int(y.size),
        n_pairs=int(d.size),
        diff=main.difference,
        se=main.se,
        df=main.df,
        ci=main.ci,
        ci_simultaneous=ci_sim,
        p=main.p,
        p_welch=cmp.welch(x, y, confidence).p,
        p_mann_whitney=p_mw,
        p_wilcoxon=p_wil,
        p_sign_flip=p_flip,
        p_equivalence=p_eq,
        p_superiority=ps,
        p_superiority_ci=ps_ci,
        hedges_g=cmp.hedges_g(x, y),
        verdict=verdict,
        still_includes=max(abs(ci_sim.low), abs(ci_sim.high)) if ci_sim else math.nan,
        mde_80=mde,
        seeds_to_decide=seeds_or_none(
            effect_size, prim.sigma, alpha / m, PLANNING_POWER, is_paired
        ),  # fmt: skip
        correlation=rho,
        correlation_ci=rho_ci,
        sigma_diff=s_d,
        seeds_paired_80=seeds_or_none(effect_size, s_d, alpha / m, PLANNING_POWER, True),
        seeds_unpaired_80=seeds_or_none(effect_size, s_pool, alpha / m, PLANNING_POWER, False),
        notes=tuple(notes),
    )


def new_images(
    diff: float,
    seed_se: float,
    seed_df: float,
    confidence: float,
    a_keys: Sequence[str],
    b_keys: Sequence[str],
    reps: Mapping[str, np.ndarray],
) -> NewImages | None:
    """Seed noise (``seed_se`` on ``seed_df``) plus the paired image-bootstrap variance of the
    seed-averaged difference (``reps``: each run's replicates on shared image draws)."""
    ka = [k for k in a_keys if k in reps]
    kb = [k for k in b_keys if k in reps]
    if not ka or not kb or not math.isfinite(seed_se):
        return None
    boot = np.mean([reps[k] for k in ka], axis=0) - np.mean([reps[k] for k in kb], axis=0)
    boot = boot[np.isfinite(boot)]
    if boot.size < 2:
        return None
    image_se = float(np.std(boot, ddof=1))
    se = math.sqrt(seed_se**2 + image_se**2)
    # Welch-Satterthwaite with the bootstrap term on infinite df.
    df = seed_df * (se / seed_se) ** 4 if seed_se > 0 else math.inf
    q = float(stats.t.ppf(0.5 + confidence / 2, df))
    return NewImages(
        diff, seed_se, image_se, se, df, Interval(diff - q * se, diff + q * se, confidence)
    )


def compare_to_baseline(
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
        compare_settings(
            s, mains[s], baseline, mains[baseline],
            paired=paired, alpha=alpha, m=m, effect_size=effect_size,
        )
        for s in others
    ]  # fmt: skip
    adjusted = cmp.holm([c["p"] for c in raw])
    out = []
    for c, p_adj in zip(raw, adjusted, strict=True):
        ni = new_images(
            c["diff"],
            c["se"],
            c["df"],
            1.0 - alpha,
            [r.key for r in mains[c["a"]] if not r.failed],
            [r.key for r in mains[baseline] if not r.failed],
            reps,
        )
        out.append(ComparisonResult(**c, p_adjusted=float(p_adj), new_images=ni))
    return tuple(out)

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
- Sequential studies: when runs carry a ``wave``, ``sequential_table`` also decides each
  comparison wave by wave with error spending (``sequential``); those verdicts account for
  the data-dependent stop, the fixed-design verdicts beside them do not.
- Test-set noise (``image_replicates``, study reports only): the difference for new images
  from the same distribution adds the paired image-bootstrap variance of the seed-averaged
  difference to the seed variance; the share of each setting's seed variance that is specific
  to this validation set comes from paired image bootstraps of its runs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from sparse_rcnn.platform.evaluation.bootstrap import percentile_ci
from sparse_rcnn.platform.stats.comparison import compare_to_baseline, finite
from sparse_rcnn.platform.stats.components import (
    ALL,
    Decomposition,
    decompose,
    validation_set_share,
)
from sparse_rcnn.platform.stats.planning import plan
from sparse_rcnn.platform.stats.results import (
    Analysis,
    ComparisonResult,
    ComponentResult,
    PowerResult,
    SettingResult,
)
from sparse_rcnn.platform.stats.sequential_table import sequential_analysis
from sparse_rcnn.platform.stats.spending import Spending
from sparse_rcnn.platform.stats.summary import summarize
from sparse_rcnn.platform.stats.table import Run, check_runs

__all__ = ["Analysis", "ComparisonResult", "PowerResult", "analyze"]


def _main_group(runs: Sequence[Run], design: str) -> tuple[str, list[Run]]:
    if design == "all":
        return "all", list(runs)
    mine = [r for r in runs if r.source == ALL]
    return ("all", mine) if mine else ("(none)", [])


def _per_setting(
    runs: Sequence[Run],
    labels: list[str],
    design: str,
    reps: Mapping[str, np.ndarray],
    confidence: float,
) -> tuple[list[SettingResult], dict[str, list[Run]], list[ComponentResult], dict]:
    """Each setting's summary over its main group, the validation-set share of its seed
    variance (when image replicates exist), and its variance components (decompose designs)."""
    by_setting = {s: [r for r in runs if r.setting == s] for s in labels}
    settings: list[SettingResult] = []
    mains: dict[str, list[Run]] = {}
    components: list[ComponentResult] = []
    decs: dict[str, Decomposition] = {}
    for s in labels:
        group, main = _main_group(by_setting[s], design)
        mains[s] = main
        summary = summarize(
            np.array([r.value for r in main], dtype=np.float64), confidence=confidence
        )
        done = [r for r in main if not r.failed and r.key in reps]
        share = None
        if len(done) >= 2:
            share = validation_set_share(
                np.array([r.value for r in done]), np.stack([reps[r.key] for r in done])
            )
        settings.append(SettingResult(s, group, tuple(r.key for r in main), summary, share))
        if design == "decompose":
            groups = {
                src: finite([r for r in by_setting[s] if r.source == src])
                for src in dict.fromkeys(r.source for r in by_setting[s])
            }
            dec = decs[s] = decompose(groups, confidence=confidence)
            for c in (*dec.components, *([dec.total] if dec.total else [])):
                components.append(
                    ComponentResult(s, c.source, c.n, c.variance, c.ci, c.method, c.note)
                )
    return settings, mains, components, decs


def _image_intervals(
    reps: Mapping[str, np.ndarray], confidence: float
) -> dict[str, tuple[float, float]]:
    """Each run's percentile interval over its image-bootstrap replicates (NaN ones ignored)."""
    keys = [k for k, v in reps.items() if np.isfinite(v).any()]
    if not keys:
        return {}
    low, high = percentile_ci(np.stack([reps[k] for k in keys], axis=1), confidence)
    return {k: (float(lo), float(hi)) for k, lo, hi in zip(keys, low, high, strict=True)}


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
    max_seeds: int | None = None,
    spending: str = "obrien_fleming",
    futility: bool = False,
) -> Analysis:
    """Analyse runs (see the module doc). ``paired`` None: paired when runs carry replicates.

    ``image_replicates`` maps a run's ``key`` to its (B,) image-bootstrap replicates of the
    metric on image draws shared by every run (same units as ``value``). ``max_seeds``,
    ``spending`` and ``futility`` describe the sequential design of runs with waves
    (``sequential_table``); they are refused for runs without waves.
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
    waved = runs[0].wave is not None  # check_runs: all runs or none
    if waved and design != "all":
        raise ValueError(f"{name}: a wave column needs every run in source all (no decompose)")
    if not waved and (max_seeds is not None or futility or spending != "obrien_fleming"):
        raise ValueError(f"{name}: max seeds, spending and futility need a wave column")
    seq_spending = Spending(spending)
    has_rep = all(r.replicate is not None for r in runs if r.source == ALL)
    is_paired = has_rep if paired is None else bool(paired and has_rep)
    notes: list[str] = []
    if paired and not has_rep:
        notes.append("paired analysis asked for, but the runs carry no replicate: unpaired")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        settings, mains, components, decs = _per_setting(runs, labels, design, reps, confidence)
        power = plan(settings, decs, mains, labels, baseline, alpha, effect_size, is_paired)
        comparisons = compare_to_baseline(
            mains, labels, baseline, alpha, effect_size, is_paired, reps, design, notes
        )
        sequential = None
        if waved:
            sequential = sequential_analysis(
                mains, labels, baseline, alpha=alpha, effect_size=effect_size,
                paired=is_paired, max_seeds=max_seeds, spending=seq_spending, futility=futility,
            )  # fmt: skip
            if comparisons:
                notes.append(
                    "the runs came in waves: the sequential verdicts account for stopping after "
                    "each wave; the fixed-design verdicts below do not (after a data-dependent "
                    "stop their intervals are too narrow)"
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
        image_ci=_image_intervals(reps, confidence),
        notes=tuple(notes),
        warnings=tuple(sorted(set(caught_msgs))),
        run_word=run_word,
        sequential=sequential,
    )

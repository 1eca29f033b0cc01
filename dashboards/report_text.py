"""An ``Analysis`` as JSON (the documented keys), plain-language conclusions and Markdown.

Numbers come from ``analysis``; this module only words and formats them. Every level printed
derives from alpha (``confidence = 1 - alpha``; with m comparisons the simultaneous level is
``1 - alpha/m``).
"""

from __future__ import annotations

import math
from dataclasses import is_dataclass
from typing import Any

import numpy as np

from sparse_rcnn.platform.stats.results import Analysis, ComparisonResult
from sparse_rcnn.platform.stats.summary import Interval


def _num(x: Any) -> Any:
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _pair(ci: Interval | None) -> list[float | None] | None:
    return None if ci is None else [_num(ci.low), _num(ci.high)]


def _plain(x: Any) -> Any:
    """Dataclasses, intervals and numpy scalars as JSON values (NaN -> None)."""
    if isinstance(x, Interval):
        return _pair(x)
    if is_dataclass(x):
        return {k: _plain(getattr(x, k)) for k in x.__dataclass_fields__}
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return _num(x)


def _pct(level: float) -> str:
    return f"{100 * level:.4g}%"


def analysis_json(a: Analysis) -> dict[str, Any]:
    """The JSON of ``sparse-rcnn analyze --json-out`` and ``report.json`` (keys in README)."""
    settings = []
    for s in a.settings:
        sm = s.summary
        entry = {
            "setting": s.setting,
            "n": sm.n,
            "mean": _num(sm.mean),
            "std": _num(sm.std),
            "std_ci": _pair(sm.std_ci),
            "mean_ci": _pair(sm.mean_ci),
            "mean_ci_method": sm.mean_ci_method,
            "t_ci": _pair(sm.t_ci),
            "n_failed": sm.n_nan,
            "group": s.group,
            "runs": list(s.runs),
            "values": [_num(v) for v in sm.values],
            "minimum": _num(sm.minimum),
            "maximum": _num(sm.maximum),
            "median": _num(sm.median),
            "iqm": _num(sm.iqm),
            "notes": list(sm.notes),
            "validation_set": _plain(s.validation_set),
        }
        settings.append(entry)
    comparisons = []
    for c in a.comparisons:
        d = _plain(c)
        d["notes"] = list(c.notes)
        d["text"] = verdict_text(a, c)
        comparisons.append(d)
    components = [
        {
            "setting": c.setting,
            "source": c.source,
            "variance": _num(c.variance),
            "ci": _pair(c.ci),
            "n": c.n,
            "method": c.method,
            "note": c.note,
        }
        for c in a.components
    ]
    dominant = {s: d.dominant for s, d in a.decompositions.items()}
    # Imported here: sequential_text formats with this module's helpers.
    from sparse_rcnn.dashboards.sequential_text import sequential_json

    return {
        "alpha": a.alpha,
        "confidence": a.confidence,
        "effect_size": a.effect_size,
        "metric": a.metric,
        "unit": a.unit,
        "design": a.design,
        "pairing": a.pairing,
        "baseline": a.baseline,
        "settings": settings,
        "comparisons": comparisons,
        "components": components,
        "dominant_source": dominant,
        "power": _plain(a.power),
        "sequential": sequential_json(a),
        "runs": [
            {
                "key": r.key,
                "setting": r.setting,
                "seed": r.seed,
                "source": r.source,
                "replicate": r.replicate,
                "value": _num(r.value),
                "image_se": _num(a.image_se.get(r.key, math.nan)),
                "image_ci": [_num(v) for v in a.image_ci[r.key]] if r.key in a.image_ci else None,
                **({"wave": r.wave} if r.wave is not None else {}),
            }
            for r in a.runs
        ],
        "failed": [r.key for r in a.failed],
        "notes": list(a.notes),
        "warnings": list(a.warnings),
        "conclusions": conclusions(a),
    }


def _f(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _p(p: float | None) -> str:
    """``= 0.034`` or ``< 0.001`` (never ``= 0.000``)."""
    if p is None or not math.isfinite(p):
        return "= n/a"
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def _ci(ci: Interval | None, sep: str = " to ") -> str:
    return "n/a" if ci is None else f"{_f(ci.low)}{sep}{_f(ci.high)}"


def _u(a: Analysis) -> str:
    return f" {a.metric}" if a.metric and a.metric != "value" else ""


def verdict_text(a: Analysis, c: ComparisonResult) -> str:
    """One sentence: the verdict, its interval at the level it was decided, and what it means."""
    u = _u(a)
    lvl = _pct(1 - a.alpha / a.m) if a.m else _pct(a.confidence)
    kind = "simultaneous " if a.m > 1 else ""
    sign = "+" if c.diff >= 0 else ""
    what = "paired by replicate" if c.design == "paired" else "Welch"
    head = (
        f"{c.a} vs {c.b}: {sign}{_f(c.diff)}{u} ({lvl} {kind}CI {_ci(c.ci_simultaneous)}, "
        f"{what} p {_p(c.p)}" + (f", Holm-adjusted p {_p(c.p_adjusted)}" if a.m > 1 else "") + ")"
    )
    if c.verdict == "different":
        out = f"{head}: distinguishable from seed noise at alpha {a.alpha:g}"
        small = [n for n in c.notes if n.startswith("different from 0 but smaller")]
        if small:
            out += f", and smaller than the effect of interest {a.effect_size:g}{u}"
        return out + "."
    if c.verdict == "equivalent":
        return (
            f"{head}: equivalent within +/- {a.effect_size:g}{u} (two one-sided tests at alpha "
            f"{a.alpha / max(a.m, 1):g}, p {_p(c.p_equivalence)}): this change does not "
            f"move {a.metric or 'the value'} by {a.effect_size:g} or more."
        )
    n = c.n_pairs if c.design == "paired" else min(c.n_a, c.n_b)
    seeds = f"about {c.seeds_to_decide}" if c.seeds_to_decide else "an unknown number of"
    return (
        f"{head}: undecided: the CI still includes effects up to {_f(c.still_includes)}{u}; "
        f"with {n} seeds per setting the smallest effect detectable at 80% power is "
        f"{_f(c.mde_80)}{u}; {seeds} seeds per setting would decide it."
    )


def conclusions(a: Analysis) -> list[str]:
    """Plain-language conclusions, most important first."""
    u = _u(a)
    out: list[str] = []
    if a.failed:
        keys = ", ".join(r.key for r in a.failed)
        out.append(
            f"{len(a.failed)} {a.run_word}(s) failed and are excluded from every statistic: {keys}."
        )
    out.extend(f"{n[0].upper()}{n[1:]}." for n in a.notes)
    from sparse_rcnn.dashboards.sequential_text import sequential_conclusions

    out.extend(sequential_conclusions(a))
    for c in a.comparisons:
        out.append(verdict_text(a, c))
        if c.new_images is not None and c.new_images.ci is not None:
            ni = c.new_images
            out.append(
                f"  For new images from the same distribution (seed noise plus test-set "
                f"sampling, paired image bootstrap of the seed means): {_f(ni.diff)}{u} "
                f"({_pct(a.confidence)} CI {_ci(ni.ci)}); the line above answers the question "
                f"on this validation set only."
            )
        if c.design == "paired" and math.isfinite(c.correlation):
            rho_ci = (
                f" ({_pct(a.confidence)} CI {_ci(c.correlation_ci)})" if c.correlation_ci else ""
            )
            out.append(
                f"  Pairing: replicate effects correlate r = {_f(c.correlation)}{rho_ci} across "
                f"the two settings; to detect {a.effect_size:g}{u} at 80% power a paired design "
                f"needs {c.seeds_paired_80 or 'n/a'} seeds per setting, an unpaired one "
                f"{c.seeds_unpaired_80 or 'n/a'}."
            )
    p = a.power
    if math.isfinite(p.sigma):
        out.append(
            f"Seed-to-seed sigma = {_f(p.sigma)}{u} ({_pct(a.confidence)} CI {_ci(p.sigma_ci, '-')}"
            f", {p.df} degrees of freedom; {p.sigma_source})."
        )
    else:
        out.append("Seed-to-seed sigma is undefined: each setting needs at least 2 finished runs.")
    if p.seeds_per_arm_80:
        out.append(
            f"Planning (independent seeds, alpha {a.alpha:g}, 80% power, effect "
            f"{a.effect_size:g}{u}): {p.seeds_per_arm_80} seeds per setting if sigma is as "
            f"estimated; {p.seeds_per_arm_80_upper or 'n/a'} if sigma is at its one-sided 80% "
            f"upper bound {_f(p.sigma_upper)} (enough with 80% confidence that sigma is not "
            f"larger); {p.seeds_per_arm_80_ci_high or 'n/a'} at the top of its interval "
            f"(the cautious worst case)."
        )
    if a.pairing == "paired" and p.seeds_paired_80:
        out.append(
            f"Paired design (same seeds per replicate): sigma of the differences "
            f"{_f(p.sigma_diff)}{u}, {p.seeds_paired_80} seeds per setting for the same power."
        )
    if math.isfinite(p.mde_80):
        out.append(
            f"With {p.n_current} seeds per setting the smallest difference detectable at 80% "
            f"power (independent seeds) is {_f(p.mde_80)}{u}."
        )
    for s in a.settings:
        v = s.validation_set
        if v is not None:
            out.append(
                f"{s.setting}: of the seed variance {_f(v.seed_variance, 3)}, "
                f"{_f(v.set_specific, 3)} is specific to this validation set (paired image "
                f"bootstrap); {_f(v.distribution, 3)} would remain on new images."
            )
    for setting, dec in a.decompositions.items():
        parts = ", ".join(
            f"{c.source} {_f(c.variance, 3)} ({_ci(c.ci, '-')})"
            for c in dec.components
            if c.ci is not None or math.isfinite(c.variance)
        )
        dom = (
            f"{dec.dominant} dominates (its interval lies above every other source's)"
            if dec.dominant
            else "no single source can be shown to dominate at this n"
        )
        out.append(
            f"{setting}: variance components ({a.metric or 'value'} squared) net of run-to-run "
            f"noise: {parts}; {dom}."
        )
    return out


def to_markdown(a: Analysis, title: str = "Seed study analysis") -> str:
    """Conclusions first, then the tables."""
    u = a.metric if a.metric != "value" else "value"
    conf = _pct(a.confidence)
    lines = [
        f"# {title}",
        "",
        f"Metric: {u}{f' in {a.unit}' if a.unit else ''}; effect of interest "
        f"{a.effect_size:g}; alpha {a.alpha:g}; design `{a.design}`, {a.pairing}; "
        f"baseline `{a.baseline}`; runs {len(a.runs) - len(a.failed)} ok of {len(a.runs)}.",
        "",
        "## Conclusions",
        "",
    ]
    lines += [f"  - {c.strip()}" if c.startswith("  ") else f"- {c}" for c in conclusions(a)]
    lines += [
        "",
        "## Per setting",
        "",
        f"| setting | n | mean | std ({conf} CI) | mean {conf} CI | interval | min-max | IQM |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in a.settings:
        sm = s.summary
        n = f"{sm.n}" + (f" (+{sm.n_nan} failed)" if sm.n_nan else "")
        lines.append(
            f"| {s.setting} | {n} | {_f(sm.mean)} | {_f(sm.std)} ({_ci(sm.std_ci, '-')}) | "
            f"{_ci(sm.mean_ci)} | {sm.mean_ci_method} | {_f(sm.minimum)}-{_f(sm.maximum)} | "
            f"{_f(sm.iqm)} |"
        )
    reasons = sorted({n for s in a.settings for n in s.summary.notes if "not used" in n})
    lines += [f"\n{r}." for r in reasons[:1]]
    if a.comparisons:
        sim = _pct(1 - a.alpha / a.m)
        lines += [
            "",
            "## Comparisons (A minus B)",
            "",
            f"| A | B | design | diff | {conf} CI | {sim} simultaneous CI | p | Holm p | "
            "Welch p | Mann-Whitney p | Wilcoxon p | P(A>B) (CI) | Hedges' g | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in a.comparisons:
            lines.append(
                f"| {c.a} | {c.b} | {c.design} | {_f(c.diff)} | {_ci(c.ci)} | "
                f"{_ci(c.ci_simultaneous)} | {_f(c.p, 3)} | {_f(c.p_adjusted, 3)} | "
                f"{_f(c.p_welch, 3)} | {_f(c.p_mann_whitney, 3)} | {_f(c.p_wilcoxon, 3)} | "
                f"{_f(c.p_superiority)} ({_ci(c.p_superiority_ci, '-')}) | {_f(c.hedges_g)} | "
                f"{c.verdict} |"
            )
        lines.append(
            "\nP(A>B) is the chance that a run with A scores higher than a run with B "
            "(Newcombe interval)."
        )
        notes = sorted({n for c in a.comparisons for n in c.notes})
        lines += [f"- {n}" for n in notes]
    from sparse_rcnn.dashboards.sequential_text import sequential_markdown

    lines += sequential_markdown(a)
    if a.components:
        lines += [
            "",
            "## Variance components (net of run-to-run noise)",
            "",
            f"| setting | source | n | variance | {conf} CI | method |",
            "|---|---|---|---|---|---|",
        ]
        for c in a.components:
            lines.append(
                f"| {c.setting} | {c.source} | {c.n} | {_f(c.variance, 3)} | "
                f"{_ci(c.ci, '-')} | {c.method} |"
            )
        first = next(iter(a.decompositions.values()), None)
        if first is not None:
            lines += ["", f"Note: {first.note}."]
    p = a.power
    lines += [
        "",
        "## Planning",
        "",
        f"- sigma {_f(p.sigma)} on {p.df} df ({conf} CI {_ci(p.sigma_ci, '-')}); {p.sigma_source}",
        f"- seeds per setting at 80% / 90% power: {p.seeds_per_arm_80 or 'n/a'} / "
        f"{p.seeds_per_arm_90 or 'n/a'} (sigma as estimated); {p.seeds_per_arm_80_upper or 'n/a'}"
        f" at its 80% upper bound; {p.seeds_per_arm_80_ci_high or 'n/a'} at the CI top",
        f"- smallest detectable difference with n = {p.n_current}: {_f(p.mde_80)} (80% power)",
    ]
    if a.image_se:
        lines += [
            "",
            f"## Per run (test-set {conf} CI: image bootstrap of the validation set)",
            "",
            "| run | setting | source | seed | value | image SE | CI |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in a.runs:
            ci = a.image_ci.get(r.key)
            lines.append(
                f"| {r.key} | {r.setting} | {r.source} | {r.seed} | {_f(r.value)} | "
                f"{_f(a.image_se.get(r.key))} | {f'{_f(ci[0])}-{_f(ci[1])}' if ci else 'n/a'} |"
            )
    if a.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in a.warnings]
    return "\n".join(lines) + "\n"


def report_json(analysis: Analysis, rows: list[dict[str, Any]], study_id: str) -> dict[str, Any]:
    """A study's ``report.json``: the analysis JSON plus the study's own keys (``study_id``,
    ``trials``: counts and failures, ``per_trial``: each trial's value and test-set interval)
    from its results ``rows``."""
    out = analysis_json(analysis)
    failed_keys = {f.key for f in analysis.failed}
    failed = [
        {"trial": r["trial_key"], "status": r["status"], "error": (r.get("error") or "")[:300]}
        for r in rows
        if r["trial_key"] in failed_keys
    ]
    out["study_id"] = study_id
    out["trials"] = {"total": len(rows), "ok": len(rows) - len(failed), "failed": failed}
    by_key = {r["key"]: r for r in out["runs"]}
    out["per_trial"] = [
        {
            "trial": r["trial_key"],
            "setting": r["setting_label"],
            "source": r["source"],
            "seed": r.get("seed"),
            "status": r["status"],
            "value": by_key[r["trial_key"]]["value"],
            "test_se": by_key[r["trial_key"]]["image_se"],
            "test_ci": by_key[r["trial_key"]]["image_ci"],
        }
        for r in rows
    ]
    return out


def cost_conclusion(cost: dict[str, Any]) -> str:
    """One sentence on what the study's answers cost (``report.json``'s ``cost``)."""
    gpu = cost["gpu_hours"] > 0
    unit = "GPU-hours" if gpu else "CPU-hours"
    key = "gpu_hours" if gpu else "cpu_hours"
    out = f"Compute: {cost[key]:.3g} {unit} over {cost['trials']} trials"
    if gpu:
        out += f" ({cost['cpu_hours']:.3g} CPU-hours)"
    per = cost.get(f"{key}_per_decided")
    out += (
        f"; {cost['decided']} of {cost['comparisons']} comparisons decided, "
        f"{per:.3g} {unit} per decided comparison"
        if per is not None
        else f"; none of {cost['comparisons']} comparisons decided"
    )
    more = [u for u in cost["undecided"] if u.get(key) is not None and u["seeds_more"]]
    if more:
        est = "; ".join(
            f"{u['a']} vs {u['b']}: {u['seeds_more']} more seeds per setting, about "
            f"{u[key]:.3g} {unit}"
            for u in more
        )
        out += f". To decide the rest ({more[0]['basis']}): {est}"
    return out + "."


def cost_markdown(cost: dict[str, Any]) -> list[str]:
    """The report's "Compute" section: totals, per decided comparison, and the estimate for
    each comparison not decided."""

    def h(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3g}"

    lines = [
        "## Compute",
        "",
        "Trial wall time x the resources each trial reserved.",
        "",
        "| | CPU-hours | GPU-hours |",
        "|---|---:|---:|",
        f"| total ({cost['trials']} trials) | {h(cost['cpu_hours'])} | {h(cost['gpu_hours'])} |",
        f"| per trial | {h(cost['cpu_hours_per_trial'])} | {h(cost['gpu_hours_per_trial'])} |",
        f"| per decided comparison ({cost['decided']} of {cost['comparisons']}) | "
        f"{h(cost['cpu_hours_per_decided'])} | {h(cost['gpu_hours_per_decided'])} |",
    ]
    if cost["undecided"]:
        lines += ["", "Not decided yet, at the current sigma:", "",
                  "| comparison | verdict | seeds used | more seeds per setting | CPU-hours | "
                  "GPU-hours | basis |", "|---|---|---:|---:|---:|---:|---|"]  # fmt: skip
        for u in cost["undecided"]:
            more = "n/a" if u["seeds_more"] is None else str(u["seeds_more"])
            lines.append(
                f"| {u['a']} vs {u['b']} | {u['verdict']} | {u['seeds_used']} | {more} | "
                f"{h(u['cpu_hours'])} | {h(u['gpu_hours'])} | {u['basis']} |"
            )
    return [*lines, ""]

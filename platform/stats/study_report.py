"""A seed study's statistics and plain-language conclusions, from its results rows.

Pure: the inputs are the study's rows (one dict per trial, as in ``results.parquet``) and,
optionally, each trial's image-bootstrap standard error and paired image-bootstrap differences
between settings; the output is a JSON-able dict (``analyze``) and its Markdown (``to_markdown``).
Metric values arrive as COCO fractions and are reported in AP points (x 100), the unit of
``effect_size``.

- Per setting: ``summary.summarize`` (n, mean, std with chi-square CI, sem, t and BCa intervals,
  range, IQM) over the trials whose source is "all" (all-sources design) or over each source
  group (decompose design).
- Sigma for planning: the pooled within-setting std ``sqrt(sum((n_i - 1) s_i^2) / sum(n_i - 1))``
  with its chi-square CI on ``sum(n_i - 1)`` degrees of freedom.
- Power: ``power.seeds_per_arm`` at 80 % and 90 % for ``effect_size`` and the pooled sigma, and
  ``power.minimum_detectable_effect`` at the smallest current n.
- Between settings: ``compare.compare_to_baseline`` against the first setting (Welch CI and p,
  exact Mann-Whitney p, P(A > B) with a bootstrap CI, Hedges' g), Holm-adjusted when there are
  more than two settings.
- Decompose design: ``components.decompose`` per setting.
- Test-set noise: ``components.noise_ratio`` of each setting's per-trial bootstrap SEs against
  its seed std; paired image-bootstrap differences as given.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

import numpy as np

from sparse_rcnn.platform.stats.compare import compare_to_baseline
from sparse_rcnn.platform.stats.components import decompose, noise_ratio
from sparse_rcnn.platform.stats.power import minimum_detectable_effect, seeds_per_arm
from sparse_rcnn.platform.stats.summary import sigma_interval, summarize

POINTS = 100.0  # COCO fractions -> AP points


def _jsonable(x: Any) -> Any:
    if is_dataclass(x):
        return _jsonable(asdict(x))
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _value(row: Mapping[str, Any], metric: str) -> float:
    """The row's metric (fraction), NaN when missing; 0.0 is a value, not a failure."""
    v = row.get(metric)
    return math.nan if v is None else float(v)


def _values(rows: Sequence[Mapping[str, Any]], metric: str) -> list[float]:
    return [POINTS * _value(r, metric) for r in rows]


def pooled_sigma(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
    """``(sqrt(sum((n_i - 1) s_i^2) / sum(n_i - 1)), sum(n_i - 1))`` over groups with n >= 2
    finite values; ``(nan, 0)`` when there are none."""
    ss, df = 0.0, 0
    for g in groups:
        x = np.asarray([v for v in g if math.isfinite(v)], dtype=np.float64)
        if x.size >= 2:
            ss += float(np.sum((x - x.mean()) ** 2))
            df += x.size - 1
    return (math.sqrt(ss / df), df) if df else (math.nan, 0)


def analyze(
    rows: Sequence[Mapping[str, Any]],
    *,
    metric: str = "AP",
    effect_size: float = 0.3,
    alpha: float = 0.05,
    test_se: Mapping[str, float] | None = None,
    test_ci: Mapping[str, tuple[float, float]] | None = None,
    paired: Sequence[Mapping[str, Any]] | None = None,
    study_id: str = "",
) -> dict[str, Any]:
    """The full report as a JSON-able dict (module doc for every statistic). ``test_se`` maps a
    trial key to its bootstrap SE of ``metric`` and ``test_ci`` to its percentile CI (fraction
    units), listed per trial beside its value; ``paired`` holds dicts with
    ``a``, ``b`` (setting labels), ``diff``, ``ci_low``, ``ci_high``, ``prob_positive`` (fraction
    units) from paired image bootstraps."""
    confidence = 1.0 - alpha
    test_se = dict(test_se or {})
    test_ci = dict(test_ci or {})
    labels: list[str] = []
    for r in rows:
        if r["setting_label"] not in labels:
            labels.append(r["setting_label"])
    sources = sorted({r["source"] for r in rows}, key=lambda s: (s != "all", s))
    design = "all" if sources == ["all"] else "decompose"
    failed = [
        {"trial": r["trial_key"], "status": r["status"], "error": (r.get("error") or "")[:300]}
        for r in rows
        if r["status"] != "ok" or not math.isfinite(_value(r, metric))
    ]
    report: dict[str, Any] = {
        "study_id": study_id,
        "metric": metric,
        "unit": "AP points (COCO metric x 100)",
        "effect_size": effect_size,
        "alpha": alpha,
        "design": design,
        "trials": {"total": len(rows), "ok": len(rows) - len(failed), "failed": failed},
        "settings": [],
        "per_trial": [
            {
                "trial": r["trial_key"],
                "setting": r["setting_label"],
                "source": r["source"],
                "seed": r.get("seed"),
                "status": r["status"],
                "value": POINTS * _value(r, metric),
                "test_se": POINTS * test_se[r["trial_key"]] if r["trial_key"] in test_se else None,
                "test_ci": [POINTS * v for v in test_ci[r["trial_key"]]]
                if r["trial_key"] in test_ci
                else None,
            }
            for r in rows
        ],
        "conclusions": [],
    }
    warns: list[str] = []
    per_setting: dict[str, list[float]] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for label in labels:
            mine = [r for r in rows if r["setting_label"] == label]
            groups = {s: [r for r in mine if r["source"] == s] for s in sources}
            main = groups.get("all") or [r for r in mine if r["source"] != "nondeterminism"]
            values = _values(main, metric)
            per_setting[label] = values
            summary = summarize(values, confidence=confidence)
            entry: dict[str, Any] = {
                "label": label,
                "trials": [r["trial_key"] for r in main],
                "values": values,
                "summary": summary,
            }
            ses = [POINTS * test_se[r["trial_key"]] for r in main if r["trial_key"] in test_se]
            if ses:
                entry["test_set_noise"] = noise_ratio(ses, summary.std)
            if design == "decompose":
                entry["decomposition"] = decompose(
                    {s: _values(g, metric) for s, g in groups.items()}, confidence=confidence
                )
            report["settings"].append(entry)

        sigma, df = pooled_sigma(list(per_setting.values()))
        n_min = min((e["summary"].n for e in report["settings"]), default=0)
        power: dict[str, Any] = {
            "sigma": sigma,
            "df": df,
            "sigma_ci": sigma_interval(sigma, df + 1, confidence) if df else None,
        }
        if math.isfinite(sigma) and sigma > 0:
            power["seeds_per_arm_80"] = seeds_per_arm(effect_size, sigma, 0.8, alpha)
            power["seeds_per_arm_90"] = seeds_per_arm(effect_size, sigma, 0.9, alpha)
            if n_min >= 2:
                power["n_current"] = n_min
                power["mde_80"] = minimum_detectable_effect(n_min, sigma, 0.8, alpha)
            hi = power["sigma_ci"].high if power["sigma_ci"] is not None else math.nan
            if math.isfinite(hi) and hi > 0:
                power["seeds_per_arm_80_at_sigma_ci_high"] = seeds_per_arm(
                    effect_size, hi, 0.8, alpha
                )
        report["power"] = power

        comparisons = []
        if len(labels) >= 2:
            baseline = labels[0]
            for bc in compare_to_baseline(per_setting, baseline, confidence=confidence):
                item = {
                    "a": bc.setting,
                    "b": baseline,
                    "comparison": bc.comparison,
                    "welch_p_holm": bc.welch_p_holm,
                    "mann_whitney_p_holm": bc.mann_whitney_p_holm,
                }
                for p in paired or []:
                    if {p["a"], p["b"]} == {bc.setting, baseline}:
                        sign = 1.0 if p["a"] == bc.setting else -1.0
                        lo, hi = sign * p["ci_low"], sign * p["ci_high"]
                        prob = p["prob_positive"] if sign > 0 else 1.0 - p["prob_positive"]
                        item["paired_image_bootstrap"] = {
                            "diff": POINTS * sign * p["diff"],
                            "ci_low": POINTS * min(lo, hi),
                            "ci_high": POINTS * max(lo, hi),
                            "prob_a_better": prob,
                            "trials": p.get("trials"),
                        }
                comparisons.append(item)
        report["comparisons"] = comparisons
    warns += [str(w.message) for w in caught]
    report["warnings"] = sorted(set(warns))
    out = _jsonable(report)
    out["conclusions"] = _conclusions(out)
    return out


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _conclusions(r: dict[str, Any]) -> list[str]:
    out = []
    m, eff, alpha = r["metric"], r["effect_size"], r["alpha"]
    if r["trials"]["failed"]:
        keys = ", ".join(f["trial"] for f in r["trials"]["failed"])
        out.append(
            f"{len(r['trials']['failed'])} trial(s) failed and are excluded from every "
            f"statistic: {keys}."
        )
    p = r["power"]
    ci = p.get("sigma_ci")
    sigma = math.nan if p["sigma"] is None else p["sigma"]
    if math.isfinite(sigma):
        ci_txt = f" (95% CI {_fmt(ci['low'])}-{_fmt(ci['high'])})" if ci else ""
        out.append(
            f"Seed-to-seed sigma = {_fmt(p['sigma'])} {m}{ci_txt}, pooled over "
            f"{len(r['settings'])} setting(s) ({p['df']} degrees of freedom)."
        )
    else:
        out.append(
            "Seed-to-seed sigma is undefined: every setting needs at least 2 finished seeds."
        )
    if "seeds_per_arm_80" in p:
        txt = (
            f"To detect {eff:g} {m} at alpha {alpha:g} with 80% power you need "
            f"{p['seeds_per_arm_80']} seeds per setting (90% power: {p['seeds_per_arm_90']})"
        )
        if "seeds_per_arm_80_at_sigma_ci_high" in p:
            txt += (
                f"; {p['seeds_per_arm_80_at_sigma_ci_high']} if sigma is at the top of its interval"
            )
        out.append(txt + ".")
        if "mde_80" in p:
            out.append(
                f"With {p['n_current']} seeds per setting, the smallest difference "
                f"detectable at 80% power is {_fmt(p['mde_80'])} {m}."
            )
    elif sigma == 0:
        out.append("All runs of a setting gave identical values: no seed noise to plan for.")
    for c in r["comparisons"]:
        comp = c["comparison"]
        diff, dci = comp["difference"], comp["difference_ci"]
        pval = c["welch_p_holm"] if len(r["comparisons"]) > 1 else comp["welch_p"]
        holm = " (Holm-adjusted)" if len(r["comparisons"]) > 1 else ""
        verdict = (
            "a real difference at alpha " + f"{alpha:g}"
            if pval is not None and pval < alpha
            else "not distinguishable from seed noise at alpha " + f"{alpha:g}"
        )
        ci_txt = f" (95% CI {_fmt(dci['low'])} to {_fmt(dci['high'])})" if dci else ""
        pi = comp["prob_improvement"]
        out.append(
            f"{c['a']} vs {c['b']}: {'+' if (diff or 0) >= 0 else ''}{_fmt(diff)} {m}"
            f"{ci_txt}, Welch p = {_fmt(pval, 3)}{holm}, P(A > B) = {_fmt(pi)}: "
            f"{verdict}."
        )
        pb = c.get("paired_image_bootstrap")
        if pb:
            out.append(
                f"  On the same validation images (paired image bootstrap of one trial "
                f"each) the difference is {_fmt(pb['diff'])} {m} "
                f"(95% CI {_fmt(pb['ci_low'])} to {_fmt(pb['ci_high'])})."
            )
    for s in r["settings"]:
        nr = s.get("test_set_noise")
        if nr and nr["mean_test_se"] is not None:
            out.append(
                f"{s['label']}: the finite validation set alone adds {_fmt(nr['mean_test_se'])} "
                f"{m} of sampling noise per run (image bootstrap SE), beside "
                f"{_fmt(nr['seed_std'])} {m} seed-to-seed."
            )
        dec = s.get("decomposition")
        if dec:
            parts = ", ".join(f"{c['source']} {_fmt(c['std'])}" for c in dec["components"])
            out.append(
                f"{s['label']}: std of {m} when one source varies: {parts} "
                "(components need not add up)."
            )
    return out


def _ci(ci: Mapping[str, Any] | None, sep: str = "-", digits: int = 2) -> str:
    """``low-high`` of an interval dict, ``n/a`` when there is none."""
    if not ci:
        return "n/a"
    return f"{_fmt(ci['low'], digits)}{sep}{_fmt(ci['high'], digits)}"


def to_markdown(r: dict[str, Any]) -> str:
    """The report dict as Markdown: conclusions first, then the tables."""
    m = r["metric"]
    trials = r["trials"]
    lines = [
        f"# Seed study {r['study_id']}",
        "",
        f"Metric: {m} in {r['unit']}; effect of interest {r['effect_size']:g} {m}; "
        f"alpha {r['alpha']:g}; design `{r['design']}`; trials {trials['ok']} ok of "
        f"{trials['total']}.",
        "",
        "## Conclusions",
        "",
    ]
    lines += [f"  - {c.strip()}" if c.startswith("  ") else f"- {c}" for c in r["conclusions"]]
    lines += [
        "",
        "## Per setting",
        "",
        "| setting | n | mean | std (95% CI) | t-interval | BCa | min-max | IQM |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in r["settings"]:
        sm = s["summary"]
        n = f"{sm['n']}" + (f" (+{sm['n_nan']} failed)" if sm["n_nan"] else "")
        std = _fmt(sm["std"]) + (f" ({_ci(sm['std_ci'])})" if sm["std_ci"] else "")
        span = f"{_fmt(sm['minimum'])}-{_fmt(sm['maximum'])}"
        lines.append(
            f"| {s['label']} | {n} | {_fmt(sm['mean'])} | {std} | {_ci(sm['mean_ci'])} | "
            f"{_ci(sm['bootstrap_ci'])} | {span} | {_fmt(sm['iqm'])} |"
        )
    if r["comparisons"]:
        lines += [
            "",
            "## Comparisons (A minus B)",
            "",
            "| A | B | diff | Welch 95% CI | Welch p | Holm p | Mann-Whitney p | "
            "P(A>B) (95% CI) | Hedges' g | paired image bootstrap |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in r["comparisons"]:
            k = c["comparison"]
            pi = _fmt(k["prob_improvement"])
            if k["prob_improvement_ci"]:
                pi += f" ({_ci(k['prob_improvement_ci'])})"
            pb = c.get("paired_image_bootstrap")
            paired = "n/a"
            if pb:
                paired = f"{_fmt(pb['diff'])} ({_fmt(pb['ci_low'])} to {_fmt(pb['ci_high'])})"
            lines.append(
                f"| {c['a']} | {c['b']} | {_fmt(k['difference'])} | "
                f"{_ci(k['difference_ci'], ' to ')} | {_fmt(k['welch_p'], 3)} | "
                f"{_fmt(c['welch_p_holm'], 3)} | {_fmt(k['mann_whitney_p'], 3)} | {pi} | "
                f"{_fmt(k['hedges_g'])} | {paired} |"
            )
    lines += [
        "",
        f"## Per trial ({m}; test-set CI: image bootstrap of the validation set)",
        "",
        "| trial | setting | source | seed | status | value | bootstrap SE | 95% CI |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in r["per_trial"]:
        ci = t["test_ci"]
        lines.append(
            f"| {t['trial']} | {t['setting']} | {t['source']} | {t['seed']} | {t['status']} | "
            f"{_fmt(t['value'])} | {_fmt(t['test_se'])} | "
            f"{f'{_fmt(ci[0])}-{_fmt(ci[1])}' if ci else 'n/a'} |"
        )
    p = r["power"]
    n80, n90 = p.get("seeds_per_arm_80", "n/a"), p.get("seeds_per_arm_90", "n/a")
    lines += [
        "",
        "## Power",
        "",
        f"- pooled sigma {_fmt(p['sigma'])} {m} on {p['df']} df (95% CI {_ci(p['sigma_ci'])})",
        f"- seeds per setting for {r['effect_size']:g} {m}: {n80} (80% power), {n90} (90%)",
    ]
    if "mde_80" in p:
        lines.append(
            f"- smallest detectable difference with n = {p['n_current']}: "
            f"{_fmt(p['mde_80'])} {m} (80% power)"
        )
    decs = [s for s in r["settings"] if s.get("decomposition")]
    if decs:
        lines += [
            "",
            "## Variance components (one source varied at a time)",
            "",
            "| setting | source | n | std | variance (95% CI) |",
            "|---|---|---|---|---|",
        ]
        for s in decs:
            for c in s["decomposition"]["components"]:
                var = _fmt(c["variance"], 3)
                if c["variance_ci"]:
                    var += f" ({_ci(c['variance_ci'], digits=3)})"
                lines.append(
                    f"| {s['label']} | {c['source']} | {c['n']} | {_fmt(c['std'])} | {var} |"
                )
        lines += ["", f"Note: {decs[0]['decomposition']['note']}."]
    if trials["failed"]:
        lines += ["", "## Failed trials", ""]
        lines += [f"- {f['trial']} ({f['status']}): {f['error']}" for f in trials["failed"]]
    if r["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in r["warnings"]]
    return "\n".join(lines) + "\n"

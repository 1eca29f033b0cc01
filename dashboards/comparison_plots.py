"""Plots of what a study concludes: the differences against the baseline (forest plot), the
variance components of a decompose design, the power curve for planning, and a sequential
study's boundary paths.

Input is the analysis JSON (``report_text.analysis_json`` / ``report.json``), values in the
metric's units (AP points for a study). Every function returns a new Figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from sparse_rcnn.dashboards.figures import colour, empty_figure, new_figure
from sparse_rcnn.platform.stats.power import minimum_detectable_effect

VERDICT_COLOURS = {"different": "#d62728", "equivalent": "#2ca02c", "undecided": "#7f7f7f"}
POWER = 0.8  # the planning power of the report (stats.analysis.PLANNING_POWER)


def _unit(report: Mapping[str, Any]) -> str:
    return "points" if "points" in (report.get("unit") or "") else ""


def _ok(ci: Any) -> bool:
    return bool(ci) and None not in ci


def forest(report: Mapping[str, Any]) -> Figure:
    """One row per comparison (a minus the baseline): the difference (gid ``diff``), its
    simultaneous interval ``ci_simultaneous`` (gid ``ci_simultaneous``, the one the verdict
    uses), its interval at the marginal level ``ci`` (gid ``ci``), zero (gid ``zero``), the
    effect of interest +/- ``effect_size`` (gid ``effect``), which is also the equivalence
    margin (shaded, gid ``margin``), and the verdict printed at the right (gid ``verdict``)."""
    comps = report["comparisons"]
    if not comps:
        why = next(iter(report.get("notes") or []), "a single setting has nothing to compare")
        return empty_figure("Differences against the baseline", why)
    e = float(report["effect_size"])
    m = len(comps)
    fig, ax = new_figure(8.0, 1.4 + 0.7 * m)
    ys = np.arange(m)[::-1]
    ax.axvspan(-e, e, color="#2ca02c", alpha=0.08, gid="margin",
               label=f"equivalence margin +/- {e:g}")  # fmt: skip
    ax.axvline(0.0, color="black", linewidth=1.0, gid="zero")
    for x in (-e, e):
        ax.axvline(x, color="#2ca02c", linestyle="--", linewidth=1.0, gid="effect")
    ax.lines[-1].set_label(f"effect of interest {e:g}")
    sim, marg, diffs = [], [], []
    for y, c in zip(ys, comps, strict=True):
        col = VERDICT_COLOURS.get(c["verdict"], "black")
        if _ok(c.get("ci_simultaneous")):
            sim.append((y, *c["ci_simultaneous"], col))
        if _ok(c.get("ci")):
            marg.append((y, *c["ci"]))
        if c["diff"] is not None:
            diffs.append((c["diff"], y, col))
        ax.text(1.01, y, c["verdict"], color=col, fontweight="bold", va="center",
                transform=ax.get_yaxis_transform(), gid="verdict")  # fmt: skip
    sim_level = 1 - report["alpha"] / m
    if sim:
        ax.hlines([s[0] for s in sim], [s[1] for s in sim], [s[2] for s in sim],
                  colors=[s[3] for s in sim], linewidth=4, alpha=0.6, gid="ci_simultaneous",
                  label=f"{100 * sim_level:.4g}% {'simultaneous ' if m > 1 else ''}CI "
                        "(decides the verdict)")  # fmt: skip
    if marg and m > 1:
        ax.hlines([s[0] for s in marg], [s[1] for s in marg], [s[2] for s in marg],
                  colors="black", linewidth=1.2, gid="ci",
                  label=f"{100 * report['confidence']:.4g}% CI (one comparison)")  # fmt: skip
    if diffs:
        ax.scatter([d[0] for d in diffs], [d[1] for d in diffs], c=[d[2] for d in diffs],
                   marker="D", s=40, zorder=4, gid="diff", label="difference")  # fmt: skip
    ax.set_yticks(ys, [f"{c['a']}\nvs {c['b']}" for c in comps])
    ax.set_ylim(-0.7, m - 0.3)
    unit = _unit(report)
    metric = report.get("metric") or "value"
    ax.set_xlabel(f"difference in {metric}" + (f" ({unit})" if unit else "") + ", A minus B")
    ax.set_title("Differences against the baseline")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25 if m < 3 else -0.12), ncol=2,
              fontsize=8, frameon=False)  # fmt: skip
    return fig


def components(report: Mapping[str, Any]) -> Figure:
    """Variance components by source per setting (decompose designs): the component
    (gid ``variance``) and its interval (gid ``component_ci``, one segment per component with
    an interval); in the metric's squared unit."""
    rows = [c for c in report["components"] if c["source"] != "total"]
    if not rows:
        return empty_figure(
            "Variance components by source",
            "no decomposition: this design varies every seed together (randomness: all)",
        )
    settings = list(dict.fromkeys(c["setting"] for c in rows))
    sources = list(dict.fromkeys(c["source"] for c in rows))
    fig, ax = new_figure(7.0, 1.5 + 0.45 * len(rows))
    width = 0.8 / len(settings)
    xs, ys, cols, segs = [], [], [], []
    for i, s in enumerate(settings):
        for c in (c for c in rows if c["setting"] == s):
            y = sources.index(c["source"]) + (i - (len(settings) - 1) / 2) * width
            if c["variance"] is not None:
                xs.append(c["variance"])
                ys.append(y)
                cols.append(colour(i))
            if _ok(c.get("ci")):
                segs.append((y, *c["ci"], colour(i)))
    ax.scatter(xs, ys, c=cols, marker="o", s=36, zorder=3, gid="variance")
    if segs:
        ax.hlines([s[0] for s in segs], [s[1] for s in segs], [s[2] for s in segs],
                  colors=[s[3] for s in segs], linewidth=2, gid="component_ci")  # fmt: skip
    for i, s in enumerate(settings):
        ax.plot([], [], color=colour(i), marker="o", label=s)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(sources)), sources)
    ax.invert_yaxis()
    unit = _unit(report)
    ax.set_xlabel(f"variance ({(unit + ' ') if unit else ''}squared), "
                  f"{100 * report['confidence']:.4g}% CI")  # fmt: skip
    dom = {k: v for k, v in (report.get("dominant_source") or {}).items() if v}
    ax.set_title("Variance components by source (net of run-to-run noise)"
                 + (f"\ndominant: {', '.join(f'{k}: {v}' for k, v in dom.items())}" if dom
                    else ""))  # fmt: skip
    ax.legend(loc="best", fontsize=8)
    return fig


def power_curve(report: Mapping[str, Any], n_max: int | None = None) -> Figure:
    """Smallest difference detectable at 80 % power (two-sided t, independent seeds, alpha of
    the report) against seeds per setting: at the estimated sigma (gid ``at_sigma``) and at its
    one-sided 80 % upper bound (gid ``at_sigma_upper``); the study's n (gid ``n_current``) and
    the effect of interest (gid ``effect``) marked. Curves from ``stats.power``."""
    p = report["power"]
    sigma = p.get("sigma")
    if sigma is None or not sigma > 0:
        why = "sigma is undefined: each setting needs at least 2 finished runs"
        return empty_figure("Planning: seeds per setting", why)
    alpha, e = float(report["alpha"]), float(report["effect_size"])
    n_now = int(p.get("n_current") or 2)
    need = [v for v in (p.get("seeds_per_arm_80"), p.get("seeds_per_arm_80_upper")) if v]
    n_max = n_max or int(min(60, max(12, 2 * n_now, *(1.2 * v for v in need))))
    ns = np.arange(2, n_max + 1)
    fig, ax = new_figure(7.0, 4.0)
    unit = _unit(report)
    curves = [("at_sigma", sigma, "-", f"sigma = {sigma:.3g} (estimate)")]
    if p.get("sigma_upper") is not None and math.isfinite(p["sigma_upper"]):
        curves.append(("at_sigma_upper", p["sigma_upper"], "--",
                       f"sigma = {p['sigma_upper']:.3g} (one-sided 80% upper bound)"))  # fmt: skip
    for gid, s, style, label in curves:
        mde = detectable(ns, s, alpha)
        ax.plot(ns, mde, style, color="#1f77b4", linewidth=1.8, gid=gid, label=label)
    ax.axvline(n_now, color="black", linewidth=1.0, gid="n_current",
               label=f"this study: {n_now} seeds per setting")  # fmt: skip
    ax.axhline(e, color="#2ca02c", linestyle=":", linewidth=1.2, gid="effect",
               label=f"effect of interest {e:g}")  # fmt: skip
    ax.set_xlabel("seeds per setting")
    metric = report.get("metric") or "value"
    ax.set_ylabel(f"detectable difference in {metric}" + (f" ({unit})" if unit else ""))
    ax.set_ylim(bottom=0)
    ax.set_title(f"Planning: smallest difference detected with {100 * POWER:.0f}% power\n"
                 f"(alpha {alpha:g}, independent seeds)")  # fmt: skip
    ax.legend(loc="best", fontsize=8)
    return fig


def detectable(ns: np.ndarray, sigma: float, alpha: float) -> np.ndarray:
    """(len(ns),) smallest difference detectable at 80 % power with n seeds per setting."""
    return np.array([minimum_detectable_effect(int(n), sigma, POWER, alpha) for n in ns])


def sequential_boundaries(report: Mapping[str, Any]) -> Figure:
    """A sequential study's comparisons wave by wave: |t| at each look against seeds per
    setting (gid ``path:<a>``), the boundary it had to reach (gid ``boundary:<a>``, dashed,
    same colour) and the look that decided it (gid ``crossed:<a>``, a star labelled with the
    verdict). Log scale: early boundaries with few seeds are far above later ones."""
    seq = report.get("sequential") or {}
    comps = [c for c in seq.get("comparisons", []) if c.get("looks")]
    if not comps:
        return empty_figure("Sequential boundaries", "no comparison has a look yet")
    fig, ax = new_figure(7.0, 4.0)
    for i, c in enumerate(comps):
        looks = [k for k in c["looks"] if k.get("statistic") is not None]
        n = [max(k["n_a"], k["n_b"]) for k in c["looks"]]
        bound = [k["boundary"] for k in c["looks"]]
        name = f"{c['a']} vs {c['b']}"
        ax.plot(n, bound, "--", color=colour(i), linewidth=1.2, gid=f"boundary:{c['a']}",
                label=f"{name}: boundary")  # fmt: skip
        if looks:
            ax.plot([max(k["n_a"], k["n_b"]) for k in looks],
                    [max(abs(k["statistic"]), 1e-3) for k in looks], "o-", color=colour(i),
                    linewidth=1.8, gid=f"path:{c['a']}", label=f"{name}: |t|")  # fmt: skip
        hit = [k for k in looks if k.get("crossed")]
        if hit:
            k = hit[-1]
            x, y = max(k["n_a"], k["n_b"]), max(abs(k["statistic"]), 1e-3)
            ax.plot([x], [y], "*", markersize=14, color=colour(i), gid=f"crossed:{c['a']}")
            ax.annotate(k["crossed"], (x, y), textcoords="offset points", xytext=(6, 6),
                        fontsize=8)  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("seeds per setting at the look")
    ax.set_ylabel("|t| (difference / standard error)")
    ax.set_title(f"Sequential analysis: statistic against the boundary at each wave\n"
                 f"(alpha {seq.get('alpha', 0):.3g} per comparison, {seq.get('spending')} "
                 f"spending, at most {seq.get('max_seeds')} seeds)")  # fmt: skip
    ax.legend(loc="best", fontsize=7)
    return fig

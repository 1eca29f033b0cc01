"""The study report as one self-contained ``report.html`` (figures inline as ``data:`` URIs,
the tables, the conclusions) and the conclusions as Markdown for the parent run's description.

Everything is built from the report JSON (``report.json``: the analysis JSON plus the study's
``study_id`` / ``per_trial`` keys; values in AP points) and the study's results rows (for the
epoch curves), so the HTML shows the same numbers as ``report.md``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure

from sparse_rcnn.dashboards import comparison_plots, seed_plots
from sparse_rcnn.dashboards.figures import data_uri, png_bytes
from sparse_rcnn.platform.tracking import names

REPORT_HTML = names.ARTIFACT_REPORT_HTML
# (file stem, caption) in reading order; the stems are the ids of the <figure> elements.
FIGURES = (
    ("forest", "Differences against the baseline: the simultaneous interval decides the verdict"),
    ("seeds", "Each seed's value per setting, the mean and its interval"),
    ("epochs", "AP over epochs: each seed, the per-setting mean and its interval"),
    ("trials", "Each trial's test-set interval (image bootstrap) beside the seed-to-seed range"),
    ("components", "Variance components by source (decompose designs)"),
    ("power", "Planning: seeds per setting against the smallest detectable difference"),
    ("boundaries", "Sequential study: each comparison's statistic against its boundary, wave by "
                   "wave (sequential studies only)"),
)  # fmt: skip


def study_figures(
    report: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
) -> dict[str, Figure]:
    """The study figures by stem (see ``FIGURES``: six, and the boundaries of a sequential
    study); ``rows``' histories are in the report's units (AP points)."""
    metric = report.get("metric") or "AP"
    figures = {
        "forest": comparison_plots.forest(report),
        "seeds": seed_plots.seed_strip(report),
        "epochs": seed_plots.epoch_curves(rows, metric, confidence=report["confidence"]),
        "trials": seed_plots.trial_intervals(report),
        "components": comparison_plots.components(report),
        "power": comparison_plots.power_curve(report),
    }
    if report.get("sequential"):
        figures["boundaries"] = comparison_plots.sequential_boundaries(report)
    return figures


def conclusions_markdown(report: Mapping[str, Any]) -> str:
    """The conclusions as a Markdown list (sub-points indented), for ``mlflow.note.content``."""
    title = f"Seed study {report['study_id']}" if report.get("study_id") else "Seed study"
    lines = [f"### {title}: conclusions", ""]
    for c in report["conclusions"]:
        lines.append(f"  - {c.strip()}" if c.startswith("  ") else f"- {c}")
    lines += ["", f"Figures and tables: `{REPORT_HTML}` under Artifacts."]
    return "\n".join(lines) + "\n"


def _f(x: Any, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _ci(ci: Any, digits: int = 2) -> str:
    return "n/a" if not ci or None in ci else f"{ci[0]:.{digits}f} to {ci[1]:.{digits}f}"


def _table(head: Sequence[str], body: Sequence[Sequence[Any]], cls: str) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in body
    )
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>'


def _tables(report: Mapping[str, Any]) -> str:
    level = f"{100 * report['confidence']:.4g}%"
    out = ["<h2>Per setting</h2>"]
    out.append(_table(
        ["setting", "n", "failed", "mean", f"mean {level} CI", "std", f"std {level} CI",
         "min", "max"],
        [[s["setting"], s["n"], s["n_failed"], _f(s["mean"]), _ci(s["mean_ci"]), _f(s["std"]),
          _ci(s["std_ci"]), _f(s["minimum"]), _f(s["maximum"])] for s in report["settings"]],
        "settings",
    ))  # fmt: skip
    comps = report["comparisons"]
    if comps:
        sim = f"{100 * (1 - report['alpha'] / len(comps)):.4g}%"
        out.append("<h2>Comparisons (A minus B)</h2>")
        out.append(_table(
            ["A", "B", "design", "diff", f"{level} CI", f"{sim} simultaneous CI", "p",
             "Holm p", "P(A>B)", "verdict"],
            [[c["a"], c["b"], c["design"], _f(c["diff"]), _ci(c["ci"]),
              _ci(c["ci_simultaneous"]), _f(c["p"], 3), _f(c["p_adjusted"], 3),
              _f(c["p_superiority"]), c["verdict"]] for c in comps],
            "comparisons",
        ))  # fmt: skip
    if report["components"]:
        out.append("<h2>Variance components (net of run-to-run noise)</h2>")
        out.append(_table(
            ["setting", "source", "n", "variance", f"{level} CI", "method"],
            [[c["setting"], c["source"], c["n"], _f(c["variance"], 3), _ci(c["ci"], 3),
              c["method"]] for c in report["components"]],
            "components",
        ))  # fmt: skip
    p = report["power"]
    out.append("<h2>Planning</h2>")
    out.append(_table(
        ["sigma", f"sigma {level} CI", "df", "seeds 80%", "seeds 90%",
         "seeds 80% at sigma upper bound", "detectable now (80%)", "n now"],
        [[_f(p["sigma"], 3), _ci(p["sigma_ci"], 3), p["df"], p["seeds_per_arm_80"] or "n/a",
          p["seeds_per_arm_90"] or "n/a", p["seeds_per_arm_80_upper"] or "n/a",
          _f(p["mde_80"]), p["n_current"]]],
        "power",
    ))  # fmt: skip
    trials = report.get("per_trial") or [
        {"trial": r["key"], "setting": r["setting"], "source": r["source"], "seed": r["seed"],
         "status": "ok" if r["value"] is not None else "failed", "value": r["value"],
         "test_ci": r["image_ci"]} for r in report["runs"]
    ]  # fmt: skip
    out.append("<h2>Per trial</h2>")
    out.append(_table(
        ["trial", "setting", "source", "seed", "status", "value", f"test-set {level} CI"],
        [[t["trial"], t["setting"], t["source"], t["seed"], t["status"], _f(t["value"]),
          _ci(t.get("test_ci"))] for t in trials],
        "trials",
    ))  # fmt: skip
    if report.get("warnings"):
        out.append("<h2>Warnings</h2><ul>")
        out += [f"<li>{html.escape(w)}</li>" for w in report["warnings"]]
        out.append("</ul>")
    return "\n".join(out)


STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:1.6em}
ul.conclusions li{margin:.35em 0} ul.conclusions li.sub{list-style:circle;margin-left:1.5em}
figure{margin:1.2em 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#555}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right}
th{background:#f5f5f5} td:first-child,th:first-child{text-align:left}
.meta{color:#555;font-size:.9em}
"""


def render_html(report: Mapping[str, Any], figures: Mapping[str, Figure], title: str) -> str:
    """One HTML page with no external references: conclusions, figures (PNG data URIs, one
    ``<figure id=STEM>`` each), tables."""
    esc = html.escape
    items = "".join(
        f'<li class="sub">{esc(c.strip())}</li>' if c.startswith("  ") else f"<li>{esc(c)}</li>"
        for c in report["conclusions"]
    )
    meta = (
        f"Metric {esc(report.get('metric') or 'value')} in {esc(report.get('unit') or 'units')}"
        f"; effect of interest {report['effect_size']:g}; alpha {report['alpha']:g}; design "
        f"{esc(report['design'])}, {esc(report['pairing'])}; baseline "
        f"{esc(str(report['baseline']))}."
    )
    figs = "".join(
        f'<figure id="{stem}"><img src="{data_uri(figures[stem])}" alt="{esc(caption)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
        for stem, caption in FIGURES
        if stem in figures
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f'<h1>{esc(title)}</h1><p class="meta">{meta}</p>'
        f'<h2>Conclusions</h2><ul class="conclusions">{items}</ul>'
        f"{figs}{_tables(report)}</body></html>\n"
    )


@dataclass(frozen=True)
class StudyDashboard:
    """The rendered study dashboard: ``html`` (the whole report.html) and ``pngs`` (file stem ->
    PNG bytes of each figure, in ``FIGURES`` order). Written by the caller."""

    html: str
    pngs: dict[str, bytes]


def study_dashboard(
    report: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], title: str
) -> StudyDashboard:
    """Render the figures and the page once (see ``study_figures`` / ``render_html``)."""
    figures = study_figures(report, rows)
    pngs = {stem: png_bytes(figures[stem]) for stem, _ in FIGURES if stem in figures}
    return StudyDashboard(render_html(report, figures, title), pngs)

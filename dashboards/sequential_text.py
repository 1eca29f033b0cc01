"""The sequential analysis (runs that came in waves) as JSON, conclusions and Markdown.

Numbers come from ``stats.sequential_table``; this module words and formats them, with the
helpers of ``report_text``. Levels: each comparison is tested at ``alpha / m``; its repeated
interval for "different" at ``1 - alpha/m``, for equivalence at ``1 - 2 alpha/m``.
"""

from __future__ import annotations

import math
from typing import Any

from sparse_rcnn.dashboards.report_text import _ci, _f, _pct, _plain, _u
from sparse_rcnn.platform.stats.results import Analysis
from sparse_rcnn.platform.stats.sequential_table import SequentialAnalysis, SequentialComparison

SPENDING_WORDS = {
    "obrien_fleming": "O'Brien-Fleming-type",
    "pocock": "Pocock-type",
    "hsd": "Hwang-Shih-DeCani",
}


def sequential_json(a: Analysis) -> dict[str, Any] | None:
    """The ``sequential`` section of the analysis JSON (keys in the README); None without
    waves."""
    seq = a.sequential
    if seq is None:
        return None
    comparisons = []
    for c in seq.comparisons:
        entry = {"a": c.a, "b": c.b, **_plain(c.result)}
        entry.update(sigma=_plain(c.sigma), plan=_plain(c.plan), text=comparison_text(a, c))
        comparisons.append(entry)
    return {
        "spending": seq.spending,
        "futility": seq.futility,
        "max_seeds": seq.max_seeds,
        "max_seeds_source": seq.max_seeds_source,
        "alpha": seq.alpha,
        "schedule": list(seq.schedule),
        "comparisons": comparisons,
        "notes": list(seq.notes),
    }


def _design_line(seq: SequentialAnalysis) -> str:
    fut = "; futility stops on" if seq.futility else ""
    return (
        f"Sequential analysis, wave by wave ({SPENDING_WORDS[seq.spending]} alpha spending, "
        f"alpha {seq.alpha:.4g} per comparison, at most {seq.max_seeds} seeds per setting{fut}; "
        f"the baseline had {', '.join(map(str, seq.schedule))} seeds after each wave):"
    )


def comparison_text(a: Analysis, c: SequentialComparison) -> str:
    """One sentence: where the comparison stands, its repeated interval, the seeds it took
    against the fixed design with the same power."""
    r, u = c.result, _u(a)
    head = f"{c.a} vs {c.b}"
    if not r.looks:
        return f"{head}: no look yet (fewer than 2 finished values per setting)."
    last = r.looks[-1]
    lvl, lvl_eq = _pct(1 - r.alpha), _pct(1 - 2 * r.alpha)
    diff = f"{'+' if r.diff >= 0 else ''}{_f(r.diff)}{u}"
    n = f"{r.seeds_used} seeds per setting"
    t = f"|t| = {_f(abs(last.statistic))}"
    if r.verdict == "different":
        small = any(x.startswith("different from 0 but smaller") for x in r.notes)
        out = (
            f"{head}: different at wave {r.stopped_wave} after {n} ({t} >= boundary "
            f"{_f(last.boundary)}): {diff}, repeated {lvl} CI {_ci(r.rci)}"
            + (f", smaller than the effect of interest {r.effect_size:g}{u}" if small else "")
        )
    elif r.verdict == "equivalent":
        out = (
            f"{head}: equivalent within +/- {r.effect_size:g}{u} at wave {r.stopped_wave} after "
            f"{n}: {diff}, repeated {lvl_eq} CI {_ci(r.rci_equivalence)} inside the margin"
        )
    elif r.verdict == "undecided" and last.crossed == "futility":
        out = (
            f"{head}: stopped for futility at wave {r.stopped_wave} after {n}: the chance to be "
            f"found different by the last wave, were the difference {r.effect_size:g}{u}, is "
            f"{_f(100 * last.conditional_power, 0)}%; {diff}, repeated {lvl} CI {_ci(r.rci)}"
        )
    elif r.verdict == "undecided":
        widest = max(abs(r.rci.low), abs(r.rci.high)) if r.rci else math.nan
        out = (
            f"{head}: undecided at the final look (wave {r.stopped_wave}, {n}, level "
            f"{last.level:.3g}): {diff}, repeated {lvl} CI {_ci(r.rci)} still includes effects "
            f"up to {_f(widest)}{u}"
        )
    else:
        out = (
            f"{head}: open after wave {last.wave} ({r.seeds_used} of at most {r.max_seeds} "
            f"seeds per setting; {t} < boundary {_f(last.boundary)}): run the next wave; "
            f"repeated {lvl} CI {_ci(r.rci)}"
        )
    p = c.plan
    if p is not None and p.fixed_seeds:
        out += (
            f". At sigma {_f(c.sigma)}{u} this design has {_f(100 * p.power, 0)}% power at "
            f"{r.effect_size:g}{u} and uses {p.expected_seeds_effect:.1f} seeds per setting on "
            f"average at that difference ({p.expected_seeds_null:.1f} at 0); a fixed design "
            f"with the same power needs {p.fixed_seeds}"
        )
    return out + "."


def sequential_conclusions(a: Analysis) -> list[str]:
    """The design line and one line per comparison; empty without waves."""
    seq = a.sequential
    if seq is None:
        return []
    out = [_design_line(seq)]
    out += [f"  {comparison_text(a, c)}" for c in seq.comparisons]
    out += [f"  Note: {n}." for n in seq.notes]
    return out


def sequential_markdown(a: Analysis) -> list[str]:
    """A section with each comparison's boundary path; empty without waves."""
    seq = a.sequential
    if seq is None:
        return []
    lines = ["", "## Sequential analysis (wave by wave)", "", _design_line(seq)]
    lines += [f"\nNote: {n}." for n in seq.notes]
    for c in seq.comparisons:
        lvl, lvl_eq = _pct(1 - c.result.alpha), _pct(1 - 2 * c.result.alpha)
        lines += [
            "",
            f"### {c.a} vs {c.b}: {c.result.verdict}",
            "",
            comparison_text(a, c),
            "",
            "| wave | seeds A / B | information | alpha spent | diff | t | boundary | "
            f"equivalence boundary | repeated {lvl} CI | repeated {lvl_eq} CI | crossed |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for lk in c.result.looks:
            lines.append(
                f"| {lk.wave} | {lk.n_a} / {lk.n_b} | {_f(lk.information)} | "
                f"{lk.alpha_spent:.3g} | {_f(lk.diff)} | {_f(lk.statistic)} | {_f(lk.boundary)} | "
                f"{_f(lk.equivalence_boundary)} | {_ci(lk.rci)} | {_ci(lk.rci_equivalence)} | "
                f"{lk.crossed or ''} |"
            )
    return lines

"""Plain-text tables and JSON-ready dicts for evaluation and bootstrap results.

Tables show metrics in AP points (x100, two decimals), the usual way papers report COCO numbers;
the JSON dicts keep full-precision fractions, with NaN written as null.
"""

from __future__ import annotations

import math

import numpy as np

from sparse_rcnn.platform.evaluation.bootstrap import BootstrapResult, PairedBootstrapResult
from sparse_rcnn.platform.evaluation.coco_eval import CocoEvalResult


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned first column, right-aligned others, two spaces between columns."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _points(x: float) -> str:
    """A fraction as AP points; '-' where undefined (NaN or pycocotools' -1)."""
    return "-" if not math.isfinite(x) or x == -1.0 else f"{100.0 * x:.2f}"


def _prob(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.3f}"


def stats_table(result: CocoEvalResult, boot: BootstrapResult | None = None) -> str:
    """The 12 metrics, with percentile CI and standard error columns when ``boot`` is given."""
    if boot is None:
        rows = [[name, _points(v)] for name, v in result.stats.items()]
        return format_table(["metric", "value"], rows)
    pct = f"{100 * boot.confidence:g}%"
    header = ["metric", "value", f"{pct} CI low", f"{pct} CI high", "std err", "bias"]
    rows = [
        [name, _points(v), _points(lo), _points(hi), _points(se), _points(bias)]
        for name, v, lo, hi, se, bias in zip(
            result.stats, result.stats.values(), boot.ci_low, boot.ci_high, boot.std_error,
            boot.bias, strict=True,
        )
    ]  # fmt: skip
    title = (
        f"{pct} percentile CIs over {boot.num_replicates} image-bootstrap replicates "
        f"(seed {boot.seed}); values in AP points"
    )
    return title + "\n" + format_table(header, rows)


def paired_table(res: PairedBootstrapResult, name_a: str = "A", name_b: str = "B") -> str:
    """A, B, A - B with its percentile CI and P(A - B > 0) for the 12 metrics."""
    pct = f"{100 * res.confidence:g}%"
    header = ["metric", name_a, name_b, "A-B", f"{pct} CI low", f"{pct} CI high", "P(A-B>0)"]
    rows = [
        [n, _points(a), _points(b), _points(d), _points(lo), _points(hi), _prob(p)]
        for n, a, b, d, lo, hi, p in zip(
            res.names, res.point_a, res.point_b, res.diff, res.ci_low, res.ci_high,
            res.prob_positive, strict=True,
        )
    ]  # fmt: skip
    title = (
        f"paired image bootstrap, {res.num_replicates} replicates (seed {res.seed}); "
        f"A = {name_a}, B = {name_b}; values in AP points"
    )
    return title + "\n" + format_table(header, rows)


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _by_name(names: tuple[str, ...] | list[str], values: np.ndarray) -> dict[str, float | None]:
    return {n: _num(v) for n, v in zip(names, values, strict=True)}


def result_dict(result: CocoEvalResult) -> dict:
    """JSON-ready evaluation result (stats as COCOeval gives them, -1 included)."""
    return {
        "max_dets": list(result.max_dets),
        "num_images": result.num_images,
        "num_detections_ignored": result.num_detections_ignored,
        "stats": {k: _num(v) for k, v in result.stats.items()},
        "per_category_ap": {str(k): _num(v) for k, v in result.per_category_ap.items()},
    }


def _intervals(names, low: np.ndarray, high: np.ndarray) -> dict[str, list[float | None]]:
    return {str(n): [_num(a), _num(b)] for n, a, b in zip(names, low, high, strict=True)}


def bootstrap_dict(boot: BootstrapResult) -> dict:
    """JSON-ready bootstrap summary (CIs, standard errors; not the replicates)."""
    lo, hi = boot.category_ci_low, boot.category_ci_high
    return {
        "replicates": boot.num_replicates,
        "seed": boot.seed,
        "confidence": boot.confidence,
        "ci": _intervals(boot.names, boot.ci_low, boot.ci_high),
        "std_error": _by_name(boot.names, boot.std_error),
        "bias": _by_name(boot.names, boot.bias),
        "per_category_ci": _intervals(boot.category_ids.tolist(), lo, hi),
    }


def paired_dict(res: PairedBootstrapResult) -> dict:
    """JSON-ready paired-bootstrap summary."""
    return {
        "replicates": res.num_replicates,
        "seed": res.seed,
        "confidence": res.confidence,
        "a": _by_name(res.names, res.point_a),
        "b": _by_name(res.names, res.point_b),
        "diff": _by_name(res.names, res.diff),
        "ci": _intervals(res.names, res.ci_low, res.ci_high),
        "std_error": _by_name(res.names, res.std_error),
        "prob_positive": _by_name(res.names, res.prob_positive),
    }

"""Seed-to-seed plots of a study: each seed's AP per setting, AP over epochs, and each trial's
test-set interval beside the seed spread.

Inputs are the analysis JSON (``report_text.analysis_json`` / ``report.json``: values in the
metric's units, AP points for a study) and, for the epoch curves, the study's results rows
(``results.parquet``: ``setting_label``, ``status``, ``eval_epochs`` and ``eval_<metric>``
histories, in AP points like the analysis). Every function returns a new Figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy import stats

from sparse_rcnn.dashboards.figures import colour, empty_figure, new_figure

JITTER = 0.08  # horizontal spread of the seeds of one setting, in setting slots


def _label(report: Mapping[str, Any]) -> str:
    metric = report.get("metric") or "value"
    return f"{metric} (points)" if "points" in (report.get("unit") or "") else metric


def _finite(values: Sequence[float | None]) -> np.ndarray:
    x = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return x[np.isfinite(x)]


def seed_strip(report: Mapping[str, Any]) -> Figure:
    """Each seed's value per setting (gid ``seeds``, one point per finished run), the setting
    mean (gid ``mean``) and its interval ``mean_ci`` (gid ``mean_ci``, one vertical segment per
    setting with an interval)."""
    settings = report["settings"]
    if not settings:
        return empty_figure("Seeds per setting", "no settings")
    fig, ax = new_figure(max(4.5, 1.6 * len(settings) + 2), 4.0)
    rng = np.random.default_rng(0)  # fixed jitter: the same report draws the same figure
    xs, ys, cs, mean_x, mean_y, seg = [], [], [], [], [], []
    for i, s in enumerate(settings):
        v = _finite(s["values"])
        xs += list(i + rng.uniform(-JITTER, JITTER, v.size))
        ys += list(v)
        cs += [colour(i)] * v.size
        if s["mean"] is not None:
            mean_x.append(i + 0.25)
            mean_y.append(s["mean"])
        if s.get("mean_ci") and None not in s["mean_ci"]:
            seg.append([(i + 0.25, s["mean_ci"][0]), (i + 0.25, s["mean_ci"][1])])
    ax.scatter(xs, ys, c=cs, s=28, alpha=0.8, zorder=3, gid="seeds", label="one seed")
    ax.scatter(mean_x, mean_y, marker="D", c="black", s=36, zorder=4, gid="mean", label="mean")
    level = f"{100 * report['confidence']:.4g}%"
    if seg:
        ax.vlines(
            [p[0][0] for p in seg], [p[0][1] for p in seg], [p[1][1] for p in seg],
            colors="black", linewidth=2, zorder=4, gid="mean_ci", label=f"{level} CI of the mean",
        )  # fmt: skip
    ax.set_xticks(range(len(settings)), [_tick(s) for s in settings])
    ax.set_xlim(-0.6, len(settings) - 0.4)
    ax.set_ylabel(_label(report))
    ax.set_title("Seeds per setting")
    ax.legend(loc="best", fontsize=8)
    return fig


def _tick(s: Mapping[str, Any]) -> str:
    failed = f", {s['n_failed']} failed" if s.get("n_failed") else ""
    return f"{s['setting']}\n(n = {s['n']}{failed})"


def epoch_curves(
    rows: Sequence[Mapping[str, Any]],
    metric: str = "AP",
    *,
    confidence: float = 0.95,
    unit: str = "points",
) -> Figure:
    """``metric`` over epochs: one thin line per finished trial (gid ``trial``), the
    per-setting mean over trials (gid ``mean``) and its t interval band at ``confidence``
    (gid ``band``, at epochs with 2 or more trials).

    ``rows``: results rows with ``setting_label``, ``status``, ``eval_epochs`` and
    ``eval_<metric>`` (in ``unit``).
    """
    # A metric that does not exist for a run (COCO's -1, e.g. APl without large objects) is not
    # logged, so its history can be shorter than the epochs: such trials are not drawn.
    ok = [
        r
        for r in rows
        if r.get("status") == "ok"
        and len(r.get("eval_epochs") or [])
        and len(r.get(f"eval_{metric}") or []) == len(r["eval_epochs"])
    ]
    if not ok:
        return empty_figure(f"{metric} over epochs", "no finished trial has an evaluation history")
    fig, ax = new_figure(7.0, 4.0)
    labels = list(dict.fromkeys(r["setting_label"] for r in ok))
    for i, label in enumerate(labels):
        by_epoch: dict[int, list[float]] = {}
        for r in (r for r in ok if r["setting_label"] == label):
            e = np.asarray(r["eval_epochs"], dtype=np.int64)
            v = np.asarray(r[f"eval_{metric}"], dtype=np.float64)
            ax.plot(e, v, color=colour(i), alpha=0.35, linewidth=0.9, gid="trial")
            for ep, val in zip(e.tolist(), v.tolist(), strict=True):
                if math.isfinite(val):
                    by_epoch.setdefault(ep, []).append(val)
        epochs = np.array(sorted(by_epoch))
        means = np.array([np.mean(by_epoch[e]) for e in epochs])
        ax.plot(epochs, means, color=colour(i), linewidth=2.2, marker="o", ms=3, gid="mean",
                label=f"{label} (mean of {max(len(v) for v in by_epoch.values())})")  # fmt: skip
        lo, hi = mean_band(by_epoch, confidence)
        has = np.isfinite(lo)
        if has.any():
            ax.fill_between(epochs[has], lo[has], hi[has], color=colour(i), alpha=0.18, gid="band")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
    ax.set_title(f"{metric} over epochs: each seed, the mean and its {100 * confidence:.4g}% CI")
    ax.legend(loc="best", fontsize=8)
    return fig


def mean_band(
    by_epoch: Mapping[int, Sequence[float]], confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    """(E,) lower and upper t interval of the mean at each epoch (sorted), NaN below 2 values:
    ``mean +/- t_{n-1, (1+confidence)/2} * s / sqrt(n)``."""
    lo, hi = [], []
    for e in sorted(by_epoch):
        x = np.asarray(by_epoch[e], dtype=np.float64)
        if x.size < 2:
            lo.append(math.nan)
            hi.append(math.nan)
            continue
        half = stats.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
        lo.append(x.mean() - half)
        hi.append(x.mean() + half)
    return np.array(lo), np.array(hi)


def trial_intervals(report: Mapping[str, Any]) -> Figure:
    """Per trial its value and test-set interval (``runs[].image_ci``, image bootstrap; gid
    ``image_ci``, one segment per run that has one), grouped by setting, beside the setting's
    seed-to-seed range min-max (gid ``seed_range``, one shaded span per setting)."""
    runs = [r for r in report["runs"] if r["value"] is not None]
    if not runs:
        return empty_figure("Test-set vs seed noise", "no finished runs")
    labels = list(dict.fromkeys(r["setting"] for r in runs))
    fig, ax = new_figure(max(6.0, 0.45 * len(runs) + 2.5), 4.0)
    x0, ticks, tick_labels, segs, xs, ys, cs = 0, [], [], [], [], [], []
    for i, label in enumerate(labels):
        mine = [r for r in runs if r["setting"] == label]
        values = np.array([r["value"] for r in mine])
        ax.fill_between(
            [x0 - 0.5, x0 + len(mine) - 0.5], values.min(), values.max(), color=colour(i),
            alpha=0.15, gid="seed_range",
            label=f"{label}: seed range {values.min():.2f}-{values.max():.2f}",
        )  # fmt: skip
        for j, r in enumerate(mine):
            x = x0 + j
            xs.append(x)
            ys.append(r["value"])
            cs.append(colour(i))
            if r.get("image_ci") and None not in r["image_ci"]:
                segs.append((x, *r["image_ci"]))
            ticks.append(x)
            tick_labels.append(str(r["seed"]) if r.get("seed") is not None else r["key"])
        x0 += len(mine) + 1
    ax.scatter(xs, ys, c=cs, s=24, zorder=3, gid="value")
    if segs:
        level = f"{100 * report['confidence']:.4g}%"
        ax.vlines([s[0] for s in segs], [s[1] for s in segs], [s[2] for s in segs],
                  colors="black", linewidth=1.4, zorder=2, gid="image_ci",
                  label=f"{level} test-set interval (image bootstrap)")  # fmt: skip
    ax.set_xticks(ticks, tick_labels, fontsize=8)
    ax.set_xlabel("seed (grouped by setting)")
    ax.set_ylabel(_label(report))
    title = "Test-set interval of each trial beside the seed-to-seed range"
    if not segs:
        title += "\n(no image bootstrap in this report)"
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    return fig

"""Study plots on small hand-made studies: what is drawn, and where the numbers say."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from sparse_rcnn.dashboards import comparison_plots, seed_plots
from sparse_rcnn.dashboards.figures import find, png_bytes
from sparse_rcnn.platform.stats.power import minimum_detectable_effect


def _ax(fig: Figure):
    return fig.axes[0]


def _segments(artist) -> list[tuple[float, float, float, float]]:
    """(x0, y0, x1, y1) of each segment of a LineCollection."""
    return [(s[0][0], s[0][1], s[-1][0], s[-1][1]) for s in artist.get_segments()]


def test_seed_strip_draws_every_finished_seed_and_the_mean_interval(report):
    ax = _ax(seed_plots.seed_strip(report))
    (seeds,) = find(ax, "seeds")
    values = sorted(v for s in report["settings"] for v in s["values"] if v is not None)
    assert len(seeds.get_offsets()) == 11  # 4 + 4 + 3: the failed trial is not drawn
    assert sorted(seeds.get_offsets()[:, 1]) == pytest.approx(values)
    (ci,) = find(ax, "mean_ci")
    segs = _segments(ci)
    assert len(segs) == 3
    for seg, s in zip(segs, report["settings"], strict=True):
        assert (seg[1], seg[3]) == pytest.approx(tuple(s["mean_ci"]))
    (mean,) = find(ax, "mean")
    means = [s["mean"] for s in report["settings"]]
    assert list(np.asarray(mean.get_offsets())[:, 1]) == pytest.approx(means)


def test_forest_marks_intervals_zero_effect_margin_and_verdicts(report):
    ax = _ax(comparison_plots.forest(report))
    comps = report["comparisons"]
    (sim,) = find(ax, "ci_simultaneous")
    segs = _segments(sim)
    assert len(segs) == len(comps) == 2
    for seg, c in zip(segs, comps, strict=True):
        assert (seg[0], seg[2]) == pytest.approx(tuple(c["ci_simultaneous"]))
    (marginal,) = find(ax, "ci")
    assert [(s[0], s[2]) for s in _segments(marginal)] == [
        pytest.approx(tuple(c["ci"])) for c in comps
    ]
    (diff,) = find(ax, "diff")
    assert list(np.asarray(diff.get_offsets())[:, 0]) == pytest.approx([c["diff"] for c in comps])
    (zero,) = find(ax, "zero")
    assert zero.get_xdata()[0] == 0
    effects = sorted(line.get_xdata()[0] for line in find(ax, "effect"))
    assert effects == pytest.approx([-0.3, 0.3])
    (margin,) = find(ax, "margin")
    assert (margin.get_x(), margin.get_x() + margin.get_width()) == pytest.approx((-0.3, 0.3))
    verdicts = [t.get_text() for t in find(ax, "verdict")]
    assert verdicts == [c["verdict"] for c in comps] == ["different", "equivalent"]


def test_forest_without_comparisons_says_why(report):
    one = {**report, "comparisons": [], "notes": []}
    fig = comparison_plots.forest(one)
    assert "nothing to compare" in _ax(fig).texts[0].get_text()


def test_components_draw_each_component_and_its_interval(decompose_report):
    ax = _ax(comparison_plots.components(decompose_report))
    comps = [c for c in decompose_report["components"] if c["source"] != "total"]
    (points,) = find(ax, "variance")
    assert sorted(points.get_offsets()[:, 0]) == pytest.approx(sorted(c["variance"] for c in comps))
    (ci,) = find(ax, "component_ci")
    drawn = sorted((s[0], s[2]) for s in _segments(ci))
    assert drawn == [pytest.approx(t) for t in sorted(tuple(c["ci"]) for c in comps if c["ci"])]


def test_components_of_an_all_design_say_there_is_none(report):
    fig = comparison_plots.components(report)
    assert "no decomposition" in _ax(fig).texts[0].get_text()


def test_epoch_curves_one_line_per_finished_trial_and_a_band_per_setting(rows):
    ax = _ax(seed_plots.epoch_curves(rows, "AP", confidence=0.95))
    assert len(find(ax, "trial")) == 11
    means = find(ax, "mean")
    assert len(means) == 3
    last = [r["eval_AP"][-1] for r in rows if r["setting_label"] == "lr=0.002"]
    assert means[0].get_ydata()[-1] == pytest.approx(np.mean(last))
    bands = find(ax, "band")
    assert len(bands) == 3
    lo, hi = seed_plots.mean_band({3: last}, 0.95)
    from scipy import stats

    half = stats.t.ppf(0.975, 3) * np.std(last, ddof=1) / 2
    assert (lo[0], hi[0]) == pytest.approx((np.mean(last) - half, np.mean(last) + half))
    ys = bands[0].get_paths()[0].vertices[:, 1]
    assert (ys.min(), ys.max()) == pytest.approx(
        (seed_plots.mean_band({1: [v / 3 for v in last]}, 0.95)[0][0], hi[0])
    )


def test_mean_band_is_undefined_below_two_values():
    lo, hi = seed_plots.mean_band({1: [1.0], 2: [1.0, 2.0]}, 0.95)
    assert math.isnan(lo[0]) and math.isnan(hi[0]) and hi[1] > lo[1]


def test_trial_intervals_beside_the_seed_range(report):
    ax = _ax(seed_plots.trial_intervals(report))
    (ci,) = find(ax, "image_ci")
    with_ci = [r for r in report["runs"] if r["image_ci"]]
    assert len(_segments(ci)) == len(with_ci) == 11
    assert sorted((s[1], s[3]) for s in _segments(ci)) == [
        pytest.approx(tuple(r["image_ci"])) for r in sorted(with_ci, key=lambda r: r["image_ci"])
    ]
    spans = find(ax, "seed_range")
    assert len(spans) == 3
    ys = spans[0].get_paths()[0].vertices[:, 1]
    first = report["settings"][0]
    assert (ys.min(), ys.max()) == pytest.approx((first["minimum"], first["maximum"]))


def test_power_curve_passes_through_the_reported_detectable_difference(report):
    p = report["power"]
    ax = _ax(comparison_plots.power_curve(report))
    (line,) = find(ax, "at_sigma")
    n = list(line.get_xdata()).index(p["n_current"])
    assert line.get_ydata()[n] == pytest.approx(p["mde_80"], rel=1e-6)
    (upper,) = find(ax, "at_sigma_upper")
    assert upper.get_ydata()[n] == pytest.approx(
        minimum_detectable_effect(p["n_current"], p["sigma_upper"], 0.8, report["alpha"])
    )
    assert np.all(np.diff(line.get_ydata()) < 0)  # more seeds, smaller detectable difference
    assert find(ax, "n_current")[0].get_xdata()[0] == p["n_current"]
    assert find(ax, "effect")[0].get_ydata()[0] == report["effect_size"]


def test_every_study_plot_renders_to_png(report, rows, decompose_report):
    figs = [
        seed_plots.seed_strip(report),
        seed_plots.epoch_curves(rows),
        seed_plots.trial_intervals(report),
        comparison_plots.forest(report),
        comparison_plots.components(decompose_report),
        comparison_plots.power_curve(report),
    ]
    for fig in figs:
        assert png_bytes(fig)[:8] == b"\x89PNG\r\n\x1a\n"

"""report.html from the report JSON: self-contained, every figure, the tables, the conclusions;
the conclusions as Markdown for the run description."""

from __future__ import annotations

import base64
import html
import re

from sparse_rcnn.dashboards import report_html


def test_report_html_is_self_contained_with_every_figure_and_table(report, rows):
    report = {**report, "study_id": "tiny-lr-test"}
    dash = report_html.study_dashboard(report, rows, "Seed study x")
    text = dash.html
    fixed = [s for s, _ in report_html.FIGURES if s != "boundaries"]  # sequential studies only
    assert list(dash.pngs) == fixed and len(fixed) == 6
    assert all(p[:4] == b"\x89PNG" for p in dash.pngs.values())
    ids = re.findall(r'<figure id="(\w+)"><img src="data:image/png;base64,([^"]+)"', text)
    assert [i for i, _ in ids] == fixed
    for _, b64 in ids:
        assert base64.b64decode(b64)[:4] == b"\x89PNG"
    # No external reference: nothing fetched, the file opens anywhere.
    assert not re.search(r'(src|href)="(?!data:)', text)
    for table in ("settings", "comparisons", "power", "trials"):
        assert f'<table class="{table}">' in text
    for c in report["conclusions"]:
        assert html.escape(c.strip()) in text
    assert "equivalent" in text and "different" in text
    assert text.count("<tr>") >= 1 + 3 + 1 + 2 + 1 + 1 + 12  # headers + rows


def test_conclusions_markdown_lists_every_conclusion(report):
    md = report_html.conclusions_markdown({**report, "study_id": "s1"})
    assert md.startswith("### Seed study s1: conclusions")
    bullets = [line for line in md.splitlines() if line.lstrip().startswith("- ")]
    assert len(bullets) == len(report["conclusions"])
    assert "report.html" in md


def test_html_escapes_setting_labels(report, rows):
    bad = {**report, "settings": [{**report["settings"][0], "setting": "<script>x</script>"}]}
    page = report_html.render_html(bad, report_html.study_figures(report, rows), "t")
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_a_sequential_report_plots_each_comparisons_boundary_path():
    import numpy as np

    from sparse_rcnn.dashboards.comparison_plots import sequential_boundaries
    from sparse_rcnn.dashboards.figures import find
    from sparse_rcnn.dashboards.report_text import analysis_json
    from sparse_rcnn.platform.stats.analysis import analyze
    from sparse_rcnn.platform.stats.table import Run

    rng = np.random.default_rng(0)
    runs = []
    waves = {0: 1, 1: 1, 2: 1, 3: 2, 4: 2, 5: 3}
    shift = {"base": 0.0, "far": 5.0, "near": 0.0}
    for setting in ("base", "far", "near"):
        for rep, wave in waves.items():
            if setting == "far" and wave > 1:
                continue  # decided at wave 1: the driver ran it no further
            noise = rng.normal(0, 1.0 if setting == "near" else 0.05)
            value = 20 + shift[setting] + noise
            runs.append(Run(setting, rep, value, "all", rep, f"{setting}-{rep}", wave))
    report = analysis_json(analyze(runs, metric="AP", max_seeds=6, spending="pocock"))
    far = next(c for c in report["sequential"]["comparisons"] if c["a"] == "far")
    assert far["verdict"] == "different" and far["stopped_wave"] == 1
    fig = sequential_boundaries(report)
    ax = fig.axes[0]
    (star,) = find(ax, "crossed:far")
    (bound,) = find(ax, "boundary:far")
    x, y = star.get_xdata()[0], star.get_ydata()[0]
    assert x == 3 and y >= bound.get_ydata()[0]  # crossed at 3 seeds, above its boundary
    (near,) = find(ax, "path:near")
    assert list(near.get_xdata()) == [3, 5, 6]  # one look per wave
    near_result = next(c for c in report["sequential"]["comparisons"] if c["a"] == "near")
    assert near_result["verdict"] != "open"  # the last look (6 = max seeds) ends it
    dash = report_html.study_dashboard({**report, "study_id": "seq"}, [], "Seed study seq")
    assert list(dash.pngs)[-1] == "boundaries" and len(dash.pngs) == 7
    assert '<figure id="boundaries">' in dash.html

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
    assert list(dash.pngs) == [s for s, _ in report_html.FIGURES]
    assert all(p[:4] == b"\x89PNG" for p in dash.pngs.values())
    ids = re.findall(r'<figure id="(\w+)"><img src="data:image/png;base64,([^"]+)"', text)
    assert [i for i, _ in ids] == [s for s, _ in report_html.FIGURES]
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

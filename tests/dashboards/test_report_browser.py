"""The study report in a real browser: Debian's chromium driven by Playwright against a real
``mlflow server`` holding a parent run that the real ``write_report`` logged to.

Screenshots go to the test's tmp dir (printed at the end) for a person to look at.
"""

from __future__ import annotations

import shutil

import pytest
from mlflow.tracking import MlflowClient

from sparse_rcnn.platform.orchestration.study_report import write_report
from sparse_rcnn.platform.tracking import names

pytestmark = pytest.mark.browser

INSTALL = "apt-get install -y chromium (or: make install, as root)"


def chromium() -> str:
    """Path of Debian's chromium; a missing browser fails the test (CI must have one)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(f"no chromium on PATH; install it with: {INSTALL}", pytrace=False)
    return path


@pytest.fixture
def page():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[dev]'", pytrace=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield pg
        browser.close()


def test_parent_run_shows_conclusions_and_a_report_with_every_figure(
    mlflow_server, finished_study, tmp_path, page
):
    record = finished_study(mlflow_server)
    report, md = write_report(record.study_id, replicates=0)
    c = MlflowClient(mlflow_server)
    run = c.get_run(record.parent_run_id)
    assert run.data.tags[names.TAG_NOTE].startswith("### Seed study dash-test: conclusions")
    logged = {f.path for f in c.list_artifacts(run.info.run_id)}
    assert {"report.html", "report.md", "report.json", "figures"} <= logged
    assert len(c.list_artifacts(run.info.run_id, "figures")) == 6
    shots = tmp_path / "screenshots"
    shots.mkdir()

    # Overview: the description holds the conclusions.
    exp = run.info.experiment_id
    page.goto(f"{mlflow_server}/#/experiments/{exp}/runs/{run.info.run_id}")
    verdict = report["comparisons"][0]["text"].split(":")[0]  # "lr=0.005 vs lr=0.002"
    page.get_by_text("conclusions").first.wait_for(timeout=60_000)
    page.get_by_text(verdict).first.wait_for(timeout=30_000)
    page.screenshot(path=str(shots / "overview.png"), full_page=True)

    # report.html in the artifact viewer: every image decoded, the forest plot there.
    page.goto(f"{mlflow_server}/#/experiments/{exp}/runs/{run.info.run_id}/artifacts/report.html")
    frame = page.frame_locator("iframe").first
    frame.locator("figure#forest img").wait_for(timeout=60_000)
    images = frame.locator("img")
    assert images.count() == 6
    for i in range(6):
        images.nth(i).scroll_into_view_if_needed()
        assert images.nth(i).evaluate("img => img.complete && img.naturalWidth") > 0
    assert "different" in frame.locator("table.comparisons").inner_text()
    frame.locator("h1").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "artifact_report.png"), full_page=True)

    # The same file opened on its own (as `sparse-rcnn report --html` writes it).
    page.goto(md.with_name("report.html").as_uri())
    assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("figure#forest img").count() == 1
    page.screenshot(path=str(shots / "report.png"), full_page=True)
    print(f"screenshots: {shots}")


def test_the_study_link_lists_the_parent_with_its_trials_nested_and_ap_in_points(
    mlflow_server, finished_study, page, tmp_path
):
    from sparse_rcnn.platform.evaluation.coco_eval import CocoEvalResult
    from sparse_rcnn.platform.tracking import links
    from sparse_rcnn.platform.tracking.runs import RunLogger, create_run

    record = finished_study(mlflow_server, "dash-nested")  # the server is shared by the module
    c = MlflowClient(mlflow_server)
    exp = c.get_experiment_by_name(record.experiment).experiment_id
    stats = dict.fromkeys(("AP", "AP50", "AP75", "APs", "APm", "APl"), 0.0123)
    stats["APl"] = -1.0  # no large objects: COCO's sentinel
    children = []
    for seed in (1, 2):  # logged as the engine logs an evaluation: points, sentinel left out
        run_id = create_run(mlflow_server, record.experiment, f"lr=0.002 seed={seed}",
                            {"study.setting": "lr=0.002"},
                            tags={names.TAG_STUDY_ID: record.study_id},
                            parent_run_id=record.parent_run_id)  # fmt: skip
        result = CocoEvalResult(stats, {}, (1, 10, 100), 4, 0)
        RunLogger(mlflow_server, run_id).log_epoch(1, result.points())
        children.append(run_id)
    assert c.get_run(children[0]).data.metrics["val/AP"] == pytest.approx(1.23)
    assert "val/APl" not in c.get_run(children[0]).data.metrics
    shots = tmp_path / "screenshots"
    shots.mkdir()

    page.goto(links.study_runs(mlflow_server, exp, record.study_id))
    parent = page.get_by_role("link", name=record.study_id, exact=True)
    parent.wait_for(timeout=60_000)
    page.get_by_text("3 matching runs").wait_for(timeout=30_000)  # the parent and its 2 trials
    # Trials are nested under the parent: hidden until it is expanded.
    assert page.get_by_role("link", name="lr=0.002 seed=1").count() == 0
    row = page.locator("[role=row]", has_text=record.study_id).first
    row.locator("button[data-component-id*='runnamecellrenderer']").first.click()  # the [+]
    page.get_by_role("link", name="lr=0.002 seed=1").wait_for(timeout=30_000)
    page.screenshot(path=str(shots / "study_runs.png"))

    page.goto(links.run_page(mlflow_server, exp, children[0]))
    page.get_by_text("val/AP", exact=True).first.wait_for(timeout=60_000)
    page.get_by_text("1.23", exact=True).first.wait_for(timeout=30_000)  # points, not 0.0123
    assert page.get_by_text("val/APl", exact=True).count() == 0
    page.screenshot(path=str(shots / "child_overview.png"), full_page=True)
    print(f"screenshots: {shots}")


def test_a_child_runs_detection_grid_opens_and_steps_through_epochs(mlflow_server, tmp_path, page):
    import numpy as np

    from sparse_rcnn.dashboards import run_plots
    from sparse_rcnn.dashboards.figures import figure_array
    from sparse_rcnn.platform.tracking.runs import RunLogger, create_run

    parent = create_run(mlflow_server, "dashboards-grid", "study", {})
    child = create_run(mlflow_server, "dashboards-grid", "lr=0.002 seed=1", {},
                       parent_run_id=parent)  # fmt: skip
    log = RunLogger(mlflow_server, child)
    image = np.full((96, 128, 3), 90, np.uint8)
    gt = run_plots.ImageBoxes(image, np.array([[10, 10, 60, 70.0]]), np.array([1]))
    for epoch in (1, 2):  # as the engine logs it: one grid per evaluation, step = epoch
        pred = run_plots.ImageBoxes(image, np.array([[12, 9, 58, 72.0]]), np.array([1]),
                                    np.array([0.4 + 0.2 * epoch]))  # fmt: skip
        grid = run_plots.detection_grid([pred], [gt], {1: "person"}, title=f"epoch {epoch}")
        log.log_image(figure_array(grid), names.IMAGE_DETECTIONS, epoch)
    exp = MlflowClient(mlflow_server).get_run(child).info.experiment_id
    shots = tmp_path / "screenshots"
    shots.mkdir()

    page.goto(f"{mlflow_server}/#/experiments/{exp}/runs/{child}/model-metrics")
    page.get_by_text(names.IMAGE_DETECTIONS).first.wait_for(timeout=60_000)
    slider = page.locator("[role=slider]").first
    assert slider.get_attribute("aria-valuemax") == "2"
    slider.focus()
    for epoch in (1, 2):  # the UI opens at step 0, before the first evaluation
        slider.press("ArrowRight")
        grid = page.locator(f"img[src*='val~detections%2Bstep%2B{epoch}%2B']")
        grid.wait_for(timeout=30_000)
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=grid.element_handle()
        )
        page.screenshot(path=str(shots / f"child_grid_epoch{epoch}.png"))
    print(f"screenshots: {shots}")

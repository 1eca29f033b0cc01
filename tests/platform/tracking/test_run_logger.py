"""RunLogger's picture logging and run description on a real (embedded SQLite) store."""

from __future__ import annotations

import numpy as np
from mlflow.tracking import MlflowClient

from sparse_rcnn.platform.tracking import names
from sparse_rcnn.platform.tracking.runs import RunLogger, create_run


def test_images_by_step_png_artifacts_and_the_note(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a SQLite store's artifacts go to ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = create_run(uri, "pictures", "r", {"a": 1})
    log = RunLogger(uri, run_id)
    for epoch in (1, 2):
        log.log_image(np.full((8, 12, 3), 40 * epoch, np.uint8), names.IMAGE_DETECTIONS, epoch)
    log.log_png(b"\x89PNG fake", "evaluation/pr_curves.png")
    log.set_note("### conclusions\n- one")
    c = MlflowClient(uri)
    assert c.get_run(run_id).data.tags[names.TAG_NOTE] == "### conclusions\n- one"
    assert [f.path for f in c.list_artifacts(run_id, "evaluation")] == ["evaluation/pr_curves.png"]
    images = [f.path for f in c.list_artifacts(run_id, "images")]
    # images/val~detections+step+1+timestamp+...png: MLflow's image view steps through them.
    steps = sorted(p.split("+step+")[1].split("+")[0] for p in images if p.endswith(".png"))
    assert steps == ["1", "2"]
    assert all(p.startswith("images/val~detections+") for p in images)


def test_metrics_that_do_not_exist_are_not_logged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = create_run(uri, "sentinels", "r", {"a": 1})
    RunLogger(uri, run_id).log_epoch(2, {"AP": 0.12, "APl": -1.0, "ARl": float("nan"), "APs": 0.0})
    metrics = MlflowClient(uri).get_run(run_id).data.metrics
    assert metrics == {"val/AP": 0.12, "val/APs": 0.0}

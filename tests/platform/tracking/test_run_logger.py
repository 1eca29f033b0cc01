"""RunLogger on a real (embedded SQLite) store: pictures, the run description, metrics that do
not exist, and each step written once across a restart."""

from __future__ import annotations

import numpy as np
from mlflow.tracking import MlflowClient

from sparse_rcnn.platform.tracking import names
from sparse_rcnn.platform.tracking.runs import RunLogger, create_run
from sparse_rcnn.platform.tracking.studies import eval_history


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


def _steps(c: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in c.get_metric_history(run_id, key))


def test_a_restarted_logger_writes_each_step_once(tmp_path, monkeypatch):
    """Evaluate -> log -> crash before the checkpoint -> resume from an older checkpoint: the
    new process's logger re-logs train steps 5-6 and epoch 2, which the run already holds."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = create_run(uri, "restart", "r", {"a": 1})
    first = RunLogger(uri, run_id, write_once=True)
    for step in range(1, 7):
        first.log_metrics({"train/loss": 10.0 - step, "train/lr": 0.1}, step)
    first.log_epoch(1, {"AP": 0.1})
    first.log_epoch(2, {"AP": 0.2, "APl": -1.0})
    first.log_image(np.zeros((8, 8, 3), np.uint8), names.IMAGE_DETECTIONS, 2)
    # The crash; the restart resumes after epoch 1, i.e. after train step 4.
    resumed = RunLogger(uri, run_id, write_once=True)
    for step in range(5, 10):
        resumed.log_metrics({"train/loss": 100.0 + step, "train/lr": 0.1}, step)
    resumed.log_epoch(2, {"AP": 0.25, "APl": 0.5})
    resumed.log_image(np.ones((8, 8, 3), np.uint8), names.IMAGE_DETECTIONS, 2)
    resumed.log_epoch(3, {"AP": 0.3})
    resumed.log_image(np.ones((8, 8, 3), np.uint8), names.IMAGE_DETECTIONS, 3)

    c = MlflowClient(uri)
    assert _steps(c, run_id, "val/AP") == [1, 2, 3]
    assert _steps(c, run_id, "train/loss") == list(range(1, 10))
    assert _steps(c, run_id, "train/lr") == list(range(1, 10))
    loss = {m.step: m.value for m in c.get_metric_history(run_id, "train/loss")}
    assert loss[6] == 4.0 and loss[7] == 107.0  # the first value of a step is kept
    # Per metric: val/APl was not logged at epoch 2 the first time (-1: does not exist), so
    # the re-run's value is its first at that step.
    assert _steps(c, run_id, "val/APl") == [2]
    assert eval_history(uri, run_id, ("AP",)) == {"AP": [[1.0, 0.1], [2.0, 0.2], [3.0, 0.3]]}
    grids = [a.path for a in c.list_artifacts(run_id, "images") if a.path.endswith(".png")]
    assert sorted(int(p.split("+step+")[1].split("+")[0]) for p in grids) == [2, 3]


def test_eval_history_keeps_one_point_per_epoch_the_last(tmp_path, monkeypatch):
    """A run logged twice at an epoch (by a version without the check above)."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = create_run(uri, "legacy", "r", {"a": 1})
    c = MlflowClient(uri)
    for step, value, ts in [(1, 0.1, 1000), (2, 0.2, 2000), (2, 0.25, 3000), (3, 0.3, 4000),
                            (1, 0.15, 2500)]:  # fmt: skip
        c.log_metric(run_id, "val/AP", value, timestamp=ts, step=step)
    assert eval_history(uri, run_id, ("AP",)) == {"AP": [[1.0, 0.15], [2.0, 0.25], [3.0, 0.3]]}


def test_without_write_once_a_value_logged_again_becomes_the_latest(tmp_path, monkeypatch):
    """A study report re-logs its summary at step 0 when it is rewritten (resumed study); the
    parent run must show the new numbers."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = create_run(uri, "summary", "r", {"a": 1})
    RunLogger(uri, run_id).log_metrics({"study/sigma": 1.0}, step=0)
    RunLogger(uri, run_id).log_metrics({"study/sigma": 2.0}, step=0)
    c = MlflowClient(uri)
    assert c.get_run(run_id).data.metrics["study/sigma"] == 2.0


def test_worker_node_tags_name_each_rank_and_a_later_placement_replaces_them(tmp_path, monkeypatch):
    from sparse_rcnn.platform.orchestration.train import worker_node_tags

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = create_run(uri, "nodes", "r", {"a": 1})
    log = RunLogger(uri, run_id)
    log.set_tags(worker_node_tags([("a1", "10.0.0.1"), ("b2", "10.0.0.2")]))
    log.set_tags(worker_node_tags([("a1", "10.0.0.1"), ("c3", "10.0.0.3")]))  # after a restart
    tags = MlflowClient(uri).get_run(run_id).data.tags
    assert tags[names.TAG_WORKER_NODE_IDS] == "a1,c3"
    assert tags[names.TAG_WORKER_NODE_IPS] == "10.0.0.1,10.0.0.3"
    log.set_tags({"long": "x" * 6000})
    long = MlflowClient(uri).get_run(run_id).data.tags["long"]
    assert len(long) == 5000 and long.endswith("x...")

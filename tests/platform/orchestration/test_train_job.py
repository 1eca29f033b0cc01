"""Ray Train + MLflow end to end on a real local Ray and a real MLflow server."""

from __future__ import annotations

import re

import pytest
from mlflow.tracking import MlflowClient

from sparse_rcnn.platform.evaluation.coco_eval import evaluate
from sparse_rcnn.platform.evaluation.detections import load_detections
from sparse_rcnn.platform.orchestration.cluster import ResourceError, check_resources
from sparse_rcnn.platform.orchestration.train import JobFailed, dataset_paths, run_job
from sparse_rcnn.platform.spec.job import JobSpec, ScalingSpec
from sparse_rcnn.platform.spec.load import validate

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def job(small_job):
    """Factory: the small job on 2 workers for 3 epochs, tracked at ``uri``."""

    def make(uri: str, experiment: str, **over) -> JobSpec:
        data = small_job(**{"schedule.epochs": 3, "schedule.lr_steps": [2],
                            "schedule.warmup_iters": 2, "scaling.num_workers": 2,
                            "mlflow.tracking_uri": uri, "mlflow.experiment": experiment},
                         **over)  # fmt: skip
        return validate(JobSpec, data, "test")

    return make


def test_restart_after_a_worker_failure_continues_one_run(
    job, mlflow_server, local_ray, state_dir, tmp_path, monkeypatch
):
    marker = tmp_path / "failed-once"
    monkeypatch.setenv("SPARSE_RCNN_FAIL_ONCE", f"1:0:{marker}")  # rank 0 raises in epoch 1
    outcome = run_job(job(mlflow_server, "e2e"))
    assert marker.exists(), "the failure was not injected"

    c = MlflowClient(mlflow_server)
    exp = c.get_experiment_by_name("e2e")
    runs = c.search_runs([exp.experiment_id])
    assert [r.info.run_id for r in runs] == [outcome.run_id]  # one run, no duplicate
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["schedule.epochs"] == "3"
    assert run.data.params["model.preset"] == "tiny"
    assert run.data.tags["seed.init"] and run.data.tags["ray_job_id"]
    assert run.data.tags["git_commit"]
    # Every evaluation epoch logged exactly once, although epoch 1 ran twice.
    ap = c.get_metric_history(outcome.run_id, "val/AP")
    assert sorted(m.step for m in ap) == [1, 2, 3]
    assert outcome.metrics["AP"] == pytest.approx(next(m.value for m in ap if m.step == 3))
    losses = c.get_metric_history(outcome.run_id, "train/loss")
    # One point per iteration (log_interval 1), none twice: the failure hit an epoch start.
    assert sorted(m.step for m in losses) == list(range(1, len(losses) + 1))
    assert len(losses) >= 6 and all(m.value > 0 for m in losses)
    assert c.get_metric_history(outcome.run_id, "train/lr")
    artifacts = {a.path for a in c.list_artifacts(outcome.run_id)}
    assert {"job_spec.yaml", "checkpoint", "detections"} <= artifacts
    assert [a.path for a in c.list_artifacts(outcome.run_id, "checkpoint")] == [
        "checkpoint/model.pt"
    ]
    assert [a.path for a in c.list_artifacts(outcome.run_id, "detections")] == [
        "detections/val_detections_epoch3.parquet"
    ]
    # A detection grid per evaluation (an MLflow image at step = epoch), curves after the last.
    grids = [a.path for a in c.list_artifacts(outcome.run_id, "images") if a.path.endswith(".png")]
    assert sorted(int(p.split("+step+")[1].split("+")[0]) for p in grids) == [1, 2, 3]
    assert sorted(a.path for a in c.list_artifacts(outcome.run_id, "evaluation")) == [
        "evaluation/ap_per_category.png", "evaluation/pr_curves.png",
    ]  # fmt: skip
    # AP points (x 100) of the logged detections; no COCO -1 sentinel and no "None" params.
    spec = job(mlflow_server, "e2e")
    dets = c.download_artifacts(outcome.run_id, "detections/val_detections_epoch3.parquet",
                                str(tmp_path))  # fmt: skip
    truth = evaluate(dataset_paths(spec).val_ann, load_detections(dets), spec.eval_max_dets)
    for key, value in truth.stats.items():
        logged = run.data.metrics.get(f"val/{key}")
        if value < 0:
            assert logged is None, f"val/{key} logged for a metric that does not exist"
        else:
            assert logged == pytest.approx(100 * value), key
    assert "None" not in run.data.params.values()
    assert "train/stage0.loss_cls" in run.data.metrics


def test_a_failed_run_is_marked_failed_with_its_error(
    job, mlflow_server, local_ray, state_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("SPARSE_RCNN_FAIL_ONCE", f"0:1:{tmp_path / 'marker'}")
    with pytest.raises(JobFailed, match="failed"):
        run_job(job(mlflow_server, "e2e-fail", max_failures=0))
    c = MlflowClient(mlflow_server)
    runs = c.search_runs([c.get_experiment_by_name("e2e-fail").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert "injected failure at epoch 0" in runs[0].data.tags["error"]


def test_a_spec_the_worker_refuses_is_not_retried(job, mlflow_server, local_ray, state_dir):
    """A spec that got past load-time validation (built by hand, or by another version) and that
    the worker refuses ends the run at once, with its message, although max_failures is 1."""
    spec = job(mlflow_server, "e2e-refused", max_failures=1)
    spec = spec.model_copy(update={"eval_max_dets": (100, 10, 1)})
    with pytest.raises(JobFailed) as info:
        run_job(spec)
    assert re.fullmatch(
        r"training run \w+ stopped: job spec: invalid spec: eval_max_dets: max_dets must be "
        r"three increasing positive ints, got \[100, 10, 1\]",
        str(info.value),
    ), str(info.value)
    c = MlflowClient(mlflow_server)
    runs = c.search_runs([c.get_experiment_by_name("e2e-refused").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert "eval_max_dets" in runs[0].data.tags["error"]


def test_impossible_resources_fail_at_once(local_ray):
    with pytest.raises(ResourceError, match=r"CPU: needs 8, cluster has 2"):
        check_resources(ScalingSpec(num_workers=8))
    with pytest.raises(ResourceError, match=r"GPU: needs 1, cluster has 0"):
        check_resources(ScalingSpec(num_workers=1, use_gpu=True))

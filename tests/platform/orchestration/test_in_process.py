"""A one-worker job in the calling process (a study trial's path), on the embedded MLflow store
and without Ray: the run's metrics and artifacts, restarts, failures, and resume by name."""

from __future__ import annotations

import pytest
import torch

from sparse_rcnn.platform.orchestration.in_process import (
    KEEP_CHECKPOINTS,
    checkpoint_folder,
    run_job_in_process,
)
from sparse_rcnn.platform.orchestration.train import JobFailed, create_job_run
from sparse_rcnn.platform.spec.job import JobSpec
from sparse_rcnn.platform.spec.load import validate
from sparse_rcnn.platform.tracking.runs import client
from sparse_rcnn.platform.tracking.store import resolve_tracking_uri

pytestmark = pytest.mark.slow


@pytest.fixture
def job(small_job, state_dir, monkeypatch):
    """Factory: ``(spec, tracking URI, new run id)`` of the small job (3 epochs, a checkpoint
    and an evaluation every epoch) on the embedded store of a fresh state dir."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    def make(**over) -> tuple[JobSpec, str, str]:
        data = small_job(**{"schedule.epochs": 3, "schedule.lr_steps": [2], "eval_interval": 1,
                            "mlflow.experiment": "in-process"}, **over)  # fmt: skip
        spec = validate(JobSpec, data, "test")
        uri = resolve_tracking_uri(None)
        return spec, uri, create_job_run(spec, uri)

    return make


def _val_ap_steps(uri: str, run_id: str) -> list[int]:
    return sorted(m.step for m in client(uri).get_metric_history(run_id, "val/AP"))


def test_a_run_logs_like_ray_train_and_reports_every_epoch(job, tmp_path):
    spec, uri, run_id = job()
    reports: list[dict] = []
    outcome = run_job_in_process(spec, run_id, uri, "t-s0", on_report=reports.append)
    run = client(uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert _val_ap_steps(uri, run_id) == [1, 2, 3]
    assert outcome.metrics["AP"] == pytest.approx(run.data.metrics["val/AP"])
    assert [r["eval_epoch"] for r in reports] == [1, 2, 3]
    paths = [a.path for a in client(uri).list_artifacts(run_id, "checkpoint")]
    assert paths == ["checkpoint/model.pt"]
    folder = checkpoint_folder(spec, "t-s0")
    kept = sorted(p.name for p in folder.glob("checkpoint_epoch_*.pt"))
    assert len(kept) == KEEP_CHECKPOINTS and outcome.checkpoint_path.endswith("epoch_2.pt")
    # Nothing left to train: no checkpoint in memory, the newest file is read back and logged.
    again = run_job_in_process(spec, run_id, uri, "t-s0")
    assert again.checkpoint_path == outcome.checkpoint_path and again.metrics == outcome.metrics
    model = client(uri).download_artifacts(run_id, "checkpoint/model.pt", str(tmp_path))
    assert torch.load(model, weights_only=True)["provenance"]["epoch"] == 2


def test_a_failure_restarts_from_the_last_checkpoint_within_max_failures(
    job, tmp_path, monkeypatch
):
    spec, uri, run_id = job(max_failures=1)
    marker = tmp_path / "failed-once"
    monkeypatch.setenv("SPARSE_RCNN_FAIL_ONCE", f"1:0:{marker}")  # at epoch 1's first batch
    reports: list[dict] = []
    run_job_in_process(spec, run_id, uri, "t-s1", on_report=reports.append)
    assert marker.exists()
    assert client(uri).get_run(run_id).info.status == "FINISHED"
    assert _val_ap_steps(uri, run_id) == [1, 2, 3]  # each evaluation logged once
    assert [r["epoch"] for r in reports] == [0, 1, 2]  # epoch 0 was not trained again


def test_without_restarts_left_the_run_fails_with_its_error_and_resumes_by_name(
    job, tmp_path, monkeypatch
):
    spec, uri, run_id = job(max_failures=0)
    monkeypatch.setenv("SPARSE_RCNN_FAIL_ONCE", f"2:0:{tmp_path / 'marker'}")
    with pytest.raises(JobFailed, match=r"failed: injected failure at epoch 2"):
        run_job_in_process(spec, run_id, uri, "t-s2")
    run = client(uri).get_run(run_id)
    assert run.info.status == "FAILED" and "injected failure" in run.data.tags["error"]
    # The same name continues from the newest checkpoint (what a resumed study trial does).
    reports: list[dict] = []
    outcome = run_job_in_process(spec, run_id, uri, "t-s2", on_report=reports.append)
    assert [r["epoch"] for r in reports] == [2]
    assert client(uri).get_run(run_id).info.status == "FINISHED"
    assert _val_ap_steps(uri, run_id) == [1, 2, 3] and outcome.metrics["AP"] >= 0

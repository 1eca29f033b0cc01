"""A bad ``SPARSE_RCNN_TRACKING_OUTAGE_S`` is one line before any work: no Ray started, no
MLflow run created (the training workers would read it only once the run exists)."""

from __future__ import annotations

import pytest
import yaml

EXPECTED = "SPARSE_RCNN_TRACKING_OUTAGE_S='soon': expected a positive number of seconds"


@pytest.fixture
def bad_outage(monkeypatch, state_dir):
    monkeypatch.setenv("SPARSE_RCNN_TRACKING_OUTAGE_S", "soon")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_train_and_study_refuse_a_bad_outage_setting_before_any_work(
    tmp_path, small_job, cli_error, bad_outage, state_dir
):
    import ray

    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(small_job()))
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "st", "job": job.name, "seeds": 2}))
    was_up = ray.is_initialized()
    assert cli_error("train", job) == EXPECTED
    assert cli_error("study", study) == EXPECTED
    assert ray.is_initialized() == was_up
    assert not (state_dir / "mlflow.db").exists()  # no run was created

"""Runs left RUNNING by a Ray job that has ended are closed; runs of live jobs, finished runs
and runs of other jobs are not. Real SQLite MLflow store."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from sparse_rcnn.platform.tracking import names
from sparse_rcnn.platform.tracking.orphans import close_runs_of_ended_jobs
from sparse_rcnn.platform.tracking.runs import create_run, finish_run, submission_id


@pytest.fixture
def uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'm.db'}"


def _run(uri: str, experiment: str, name: str, job: str) -> str:
    return create_run(uri, experiment, name, {}, tags={names.TAG_RAY_JOB_ID: job})


def test_only_running_runs_of_ended_jobs_are_closed_with_the_reason(uri):
    stopped = _run(uri, "a", "stopped-job", "ray-submit-00000001")
    failed = _run(uri, "b", "failed-job", "ray-submit-00000002")  # another experiment
    live = _run(uri, "a", "live-job", "ray-submit-00000003")
    done = _run(uri, "a", "done", "ray-submit-00000001")
    finish_run(uri, done, "FINISHED")
    other = _run(uri, "a", "no-submission", "02000000")
    ended = {"ray-submit-00000001": "STOPPED", "ray-submit-00000002": "FAILED",
             "ray-submit-00000003": "RUNNING"}  # fmt: skip
    closed = close_runs_of_ended_jobs(uri, ended)
    assert sorted((r.run_name, r.status) for r in closed) == [
        ("failed-job", "FAILED"), ("stopped-job", "KILLED")
    ]  # fmt: skip
    c = MlflowClient(uri)
    status = {r: c.get_run(r).info.status for r in (stopped, failed, live, done, other)}
    assert status == {stopped: "KILLED", failed: "FAILED", live: "RUNNING", done: "FINISHED",
                      other: "RUNNING"}  # fmt: skip
    error = c.get_run(stopped).data.tags[names.TAG_ERROR]
    assert error.startswith("Ray job ray-submit-00000001 ended STOPPED while this run was")
    assert close_runs_of_ended_jobs(uri, ended) == []  # nothing left to close
    assert close_runs_of_ended_jobs(uri, {}) == []


def test_the_submission_id_comes_from_rays_job_config_and_is_kept_for_children(monkeypatch):
    monkeypatch.delenv("SPARSE_RCNN_SUBMISSION_ID", raising=False)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert submission_id() is None
    monkeypatch.setenv(
        "RAY_JOB_CONFIG_JSON_ENV_VAR",
        '{"runtime_env": {}, "metadata": {"job_submission_id": "ray-submit-ab"}}',
    )
    assert submission_id() == "ray-submit-ab"
    import os

    assert os.environ["SPARSE_RCNN_SUBMISSION_ID"] == "ray-submit-ab"  # forwarded to trials
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "not json")
    assert submission_id() == "ray-submit-ab"
    monkeypatch.delenv("SPARSE_RCNN_SUBMISSION_ID")
    assert submission_id() is None

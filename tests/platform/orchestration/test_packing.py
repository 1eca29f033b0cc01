"""Trial packing and the workers' environment, without Ray: what a trial reserves, how many
trials run at once, which variables reach the workers."""

from __future__ import annotations

import pytest
import yaml

from sparse_rcnn.platform.orchestration.cluster import ResourceError, forwarded_env
from sparse_rcnn.platform.orchestration.packing import (
    TRIAL_DRIVER_CPU,
    pack_trials,
    trial_resources,
)
from sparse_rcnn.platform.spec.study import load_study


@pytest.fixture
def study(tmp_path, small_job):
    """Factory: a 2-seed x 2-setting study of the small job with ``job`` changes."""

    def make(max_concurrent_trials: int | None = None, **job):
        (tmp_path / "base.yaml").write_text(yaml.safe_dump(small_job(**job)))
        data = {"name": "p", "job": "base.yaml", "seeds": 2,
                "vary": {"optimizer.lr": [1e-3, 2e-3]},
                "max_concurrent_trials": max_concurrent_trials}  # fmt: skip
        (tmp_path / "study.yaml").write_text(yaml.safe_dump(data))
        return load_study(tmp_path / "study.yaml")

    return make


def test_two_worker_trials_reserve_exactly_two_cpus_with_their_driver(study):
    concurrency, jobs = pack_trials(study(**{"scaling.num_workers": 2}), {"CPU": 4.0})
    assert concurrency == 2 and len(jobs) == 4
    per_worker = jobs[0]["scaling"]["resources_per_worker"]
    assert per_worker == {"CPU": 1 - TRIAL_DRIVER_CPU / 2}
    assert trial_resources(jobs[0]) == {"CPU": pytest.approx(2.0)}


def test_explicit_worker_resources_are_kept_and_the_study_cap_applies(study):
    s = study(max_concurrent_trials=1, **{"scaling.resources_per_worker": {"CPU": 0.5}})
    concurrency, jobs = pack_trials(s, {"CPU": 2.0})
    assert concurrency == 1
    assert jobs[0]["scaling"]["resources_per_worker"] == {"CPU": 0.5}


def test_a_three_worker_trial_fits_three_cpus_and_is_refused_on_two(study):
    s = study(**{"scaling.num_workers": 3})
    assert pack_trials(s, {"CPU": 3.0})[0] == 1
    with pytest.raises(ResourceError, match=r"one trial needs 2\.99\d* CPU but the cluster has 2;"):
        pack_trials(s, {"CPU": 2.0})


def test_workers_get_the_platform_variables_the_state_dir_and_the_uri(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSE_RCNN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SPARSE_RCNN_FAIL_ONCE", "0:1:/x")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "secret")
    env = forwarded_env("http://127.0.0.1:5000")
    assert env["SPARSE_RCNN_FAIL_ONCE"] == "0:1:/x"
    assert env["SPARSE_RCNN_STATE_DIR"] == str((tmp_path / "state").resolve())
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert "MLFLOW_TRACKING_PASSWORD" not in env  # saved with Tune's state: no credentials
    assert "MLFLOW_TRACKING_URI" not in forwarded_env()

"""Trial packing and the workers' environment, without Ray: what a trial reserves, how many
trials run at once, which variables reach the workers."""

from __future__ import annotations

import pytest
import yaml

from sparse_rcnn.platform.orchestration.cluster import ResourceError, forwarded_env
from sparse_rcnn.platform.orchestration.packing import (
    TRIAL_DRIVER_CPU,
    pack_trials,
    trial_actor_resources,
    trial_placement,
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


def test_one_worker_trials_train_in_their_actor_which_reserves_the_worker(study):
    s = study()
    concurrency, jobs = pack_trials(s, {"CPU": 2.0})
    assert concurrency == 2 and len(jobs) == 4
    assert jobs[0]["scaling"] == s.trials[0].job["scaling"]  # nothing taken off
    assert trial_actor_resources(jobs[0]) == trial_resources(jobs[0]) == {"CPU": 1.0}
    placement = trial_placement({"trial": {"job": jobs[0]}})
    assert placement == trial_placement({"trial": {"job": jobs[3]}})  # reusable actors
    assert placement.bundles == [{"CPU": 1.0}]
    gpu = study(**{"scaling.use_gpu": True})
    assert trial_actor_resources(pack_trials(gpu, {"CPU": 2.0, "GPU": 1.0})[1][0]) == {
        "CPU": 1.0, "GPU": 1.0,
    }  # fmt: skip
    assert pack_trials(gpu, {"CPU": 2.0, "GPU": 1.0})[0] == 1


def test_a_one_worker_job_with_remote_storage_runs_on_ray_train(study):
    (job,) = pack_trials(study(storage_path="s3://bucket/ckpt"), {"CPU": 2.0})[1][:1]
    assert trial_actor_resources(job) == {"CPU": TRIAL_DRIVER_CPU}
    assert job["scaling"]["resources_per_worker"] == {"CPU": 1 - TRIAL_DRIVER_CPU}
    assert trial_resources(job) == {"CPU": pytest.approx(1.0)}


def test_two_worker_trials_reserve_exactly_two_cpus_with_their_driver(study):
    concurrency, jobs = pack_trials(study(**{"scaling.num_workers": 2}), {"CPU": 4.0})
    assert concurrency == 2 and len(jobs) == 4
    per_worker = jobs[0]["scaling"]["resources_per_worker"]
    assert per_worker == {"CPU": 1 - TRIAL_DRIVER_CPU / 2}
    assert trial_actor_resources(jobs[0]) == {"CPU": TRIAL_DRIVER_CPU}
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
    assert env["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"  # no "View run" lines
    assert "MLFLOW_TRACKING_URI" not in forwarded_env()

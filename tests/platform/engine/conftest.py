from __future__ import annotations

import pytest

from sparse_rcnn.platform.data.prepare import synthetic_dataset
from sparse_rcnn.platform.spec.job import JobSpec
from sparse_rcnn.platform.spec.load import validate


def small_spec(**changes) -> JobSpec:
    """A job that trains in seconds: 2-stage tiny model, 8 small training images."""
    data = {
        "name": "engine-test",
        "model": {"preset": "tiny", "overrides": {"num_proposals": 8, "num_stages": 2}},
        "dataset": {"kind": "synthetic", "input_ratio": 0.2,
                    "synthetic": {"images": 12, "seed": 5, "val_fraction": 0.34,
                                  "min_size": 128, "max_size": 160}},
        "schedule": {"epochs": 2, "lr_steps": [1], "warmup_iters": 3},
        "optimizer": {"lr": 1e-3},
        "batch_size_per_worker": 2,
        "mlflow": {"log_interval": 1},
    }  # fmt: skip
    for key, value in changes.items():
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return validate(JobSpec, data, "test spec")


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    s = small_spec().dataset.synthetic
    return synthetic_dataset(tmp_path_factory.mktemp("data"), s.images, s.seed, s.val_fraction,
                             s.min_size, s.max_size)  # fmt: skip


@pytest.fixture
def make_spec():
    return small_spec

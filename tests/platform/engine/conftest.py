from __future__ import annotations

import pytest

from sparse_rcnn.platform.data.prepare import synthetic_dataset
from sparse_rcnn.platform.spec.job import JobSpec
from sparse_rcnn.platform.spec.load import validate


@pytest.fixture(scope="session")
def make_spec(small_job):
    """Factory: the small test job as a validated :class:`JobSpec`."""

    def make(**changes) -> JobSpec:
        return validate(JobSpec, small_job(**changes), "test spec")

    return make


@pytest.fixture(scope="session")
def small_data(tmp_path_factory, make_spec):
    s = make_spec().dataset.synthetic
    return synthetic_dataset(tmp_path_factory.mktemp("data"), **s.model_dump())

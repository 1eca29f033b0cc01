"""Names in job and study specs follow the one name rule: they become folders, run names and
submission ids."""

from __future__ import annotations

import pytest
import yaml

from sparse_rcnn.platform.spec.load import SpecError, load_job_spec
from sparse_rcnn.platform.spec.study import load_study

RULE = (
    "is not a valid name; use letters, digits, '_', '.' and '-', starting with a letter or "
    "digit, without '..', at most 200 characters"
)


@pytest.mark.parametrize(
    ("key", "value", "field", "label"),
    [
        ("name", "..", "name", "job name"),
        ("name", ".hidden", "name", "job name"),
        ("mlflow.experiment", "../../outside", "mlflow.experiment", "experiment name"),
        ("mlflow.run_name", "a/b", "mlflow.run_name", "run name"),
    ],
)
def test_job_spec_names_follow_the_rule(tmp_path, small_job, key, value, field, label):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(small_job(**{key: value})))
    with pytest.raises(SpecError) as e:
        load_job_spec(path)
    assert str(e.value) == (
        f"{path}: invalid spec\n  {field}: Value error, {label} {value!r} {RULE}"
    )


def test_study_name_follows_the_rule(tmp_path, small_job):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(small_job()))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "a..b", "job": "base.yaml"}))
    with pytest.raises(SpecError) as e:
        load_study(path)
    assert str(e.value) == f"{path}: invalid spec\n  name: Value error, study name 'a..b' {RULE}"

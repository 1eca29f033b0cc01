"""Names in job and study specs follow the one name rule: they become folders, run names and
submission ids. Checked at load, so ``--dry-run`` already refuses them."""

from __future__ import annotations

import pytest
import yaml

from sparse_rcnn.platform.cli.main import main

RULE = (
    "is not a valid name; use letters, digits, '_', '.' and '-', starting with a letter or "
    "digit, without '..', at most 200 characters"
)


@pytest.mark.parametrize(
    ("key", "value", "label"),
    [
        ("name", "..", "job name"),
        ("name", ".hidden", "job name"),
        ("mlflow.experiment", "../../outside", "experiment name"),
        ("mlflow.run_name", "a/b", "run name"),
    ],
)
def test_job_spec_names_follow_the_rule(tmp_path, small_job, capsys, key, value, label):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(small_job(**{key: value})))
    assert main(["train", str(path), "--dry-run"]) == 2
    assert capsys.readouterr().err == (
        f"sparse-rcnn train: error: {path}: invalid spec {key}: Value error, "
        f"{label} {value!r} {RULE}\n"
    )


def test_study_name_follows_the_rule(tmp_path, small_job, capsys):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(small_job()))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "a..b", "job": "base.yaml"}))
    assert main(["study", str(path), "--dry-run"]) == 2
    assert capsys.readouterr().err == (
        f"sparse-rcnn study: error: {path}: invalid spec name: Value error, "
        f"study name 'a..b' {RULE}\n"
    )

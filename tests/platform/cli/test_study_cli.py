"""The study and report commands: dry run, and the errors that need no cluster."""

from __future__ import annotations

import pytest
import yaml

from sparse_rcnn.platform.cli.main import main


@pytest.fixture
def study_yaml(tmp_path, small_job):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(small_job()))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "cli", "job": "base.yaml", "seeds": [3, 5],
                                    "vary": {"optimizer.lr": [1e-3, 2e-3]}}))  # fmt: skip
    return path


def test_dry_run_lists_every_trial(study_yaml, capsys):
    assert main(["study", str(study_yaml), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 trials, 2 settings" in out
    for key in ("s0-all-r0", "s0-all-r1", "s1-all-r0", "s1-all-r1"):
        assert key in out
    assert "optimizer.lr=0.002" in out


def test_a_spec_and_resume_together_are_refused(study_yaml, capsys):
    assert main(["study", str(study_yaml), "--resume", "x"]) == 2
    assert "either a study spec file or --resume" in capsys.readouterr().err
    assert main(["study"]) == 2


def test_unknown_study_ids_are_named(state_dir, capsys):
    assert main(["report", "nope-123"]) == 2
    assert "unknown study 'nope-123'" in capsys.readouterr().err
    assert main(["study", "--resume", "nope-123"]) == 2
    assert "unknown study 'nope-123'" in capsys.readouterr().err


def test_a_bad_study_spec_names_the_field(tmp_path, study_yaml, capsys):
    data = yaml.safe_load(study_yaml.read_text())
    data["vary"] = {"optimizer.momentum": [0.9]}
    study_yaml.write_text(yaml.safe_dump(data))
    assert main(["study", str(study_yaml), "--dry-run"]) == 2
    assert "optimizer.momentum: unknown key" in capsys.readouterr().err

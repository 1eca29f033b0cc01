"""``sparse-rcnn ui [STUDY_ID]`` prints deep links into the model-training view: each
experiment's runs, and the study's runs, Overview page and report (the browser test opens
them). The server start is replaced; the links are read from the real embedded store."""

from __future__ import annotations

import subprocess
from urllib.parse import quote

import pytest
from mlflow.tracking import MlflowClient

from sparse_rcnn.platform.cli.main import main
from sparse_rcnn.platform.tracking.store import embedded_uri


@pytest.fixture
def no_server(monkeypatch):
    started: list[list[str]] = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, **k: started.append(cmd) or 0)
    return started


def test_ui_links_a_study_by_id_and_the_newest_study_by_default(
    finished_study, no_server, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a SQLite store's artifacts go to ./mlruns
    record = finished_study(embedded_uri())
    exp = MlflowClient(embedded_uri()).get_experiment_by_name(record.experiment).experiment_id
    base = "http://127.0.0.1:5123"
    runs = f"{base}/#/experiments/{exp}/runs?workflowType=machine_learning"
    search = quote("tags.`study.id` = 'dash-test'", safe="")
    study = f"{runs}&searchFilter={search}"
    expected = [
        f"MLflow UI on {base} (Ctrl-C stops it); open:",
        f"  experiment {record.experiment}: {runs}",
        f"  study dash-test: {study}",
        f"    conclusions: {base}/#/experiments/{exp}/runs/{record.parent_run_id}",
        f"    report: {base}/#/experiments/{exp}/runs/{record.parent_run_id}/artifacts/report.html",
    ]
    for argv in (["ui", "dash-test"], ["ui"]):
        assert main([*argv, "--port", "5123"]) == 0
        assert capsys.readouterr().out.splitlines() == expected
    assert len(no_server) == 2 and embedded_uri() in no_server[0]


def test_an_unknown_study_is_one_line_and_starts_nothing(state_dir, no_server, capsys):
    assert main(["ui", "no-such-study", "--port", "5123"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparse-rcnn ui: error: unknown study 'no-such-study'")
    assert err.count("\n") == 1 and not no_server
    assert main(["ui", "../x", "--port", "5123"]) == 2
    assert "study id '../x'" in capsys.readouterr().err and not no_server

"""``write_report`` (the real one, on a hand-made finished study) writes report.html and the
figures, logs them to the parent run with the conclusions as its description, and
``sparse-rcnn report --html PATH`` copies the page to PATH. Embedded SQLite store, no server."""

from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

from sparse_rcnn.platform.cli.main import main
from sparse_rcnn.platform.orchestration.study_record import study_folder
from sparse_rcnn.platform.tracking import names


def test_report_cli_writes_html_and_logs_it_with_the_note(
    finished_study, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a SQLite store's artifacts go to ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    record = finished_study(uri)
    out = tmp_path / "out" / "study.html"
    assert main(["report", record.study_id, "--replicates", "0", "--html", str(out)]) == 0
    assert f"report.html: {out}" in capsys.readouterr().out
    page = out.read_text()
    assert page.count('<img src="data:image/png;base64,') == 6
    assert '<figure id="forest">' in page

    c = MlflowClient(uri)
    run = c.get_run(record.parent_run_id)
    logged = {f.path for f in c.list_artifacts(run.info.run_id)}
    assert {"report.html", "report.md", "report.json", "figures"} <= logged
    pngs = sorted(f.path for f in c.list_artifacts(run.info.run_id, "figures"))
    assert pngs == sorted(
        f"figures/{s}.png" for s in ("forest", "seeds", "epochs", "trials", "components", "power")
    )
    note = run.data.tags[names.TAG_NOTE]
    report = json.loads((study_folder(record.study_id) / "report.json").read_text())
    for line in report["conclusions"]:
        assert line.strip() in note

    # Headline numbers as parent metrics named by setting label, the verdicts as tags.
    metrics, tags = run.data.metrics, run.data.tags
    for s in report["settings"]:
        assert metrics[f"study/{names.label_key(s['setting'])}/mean"] == s["mean"]
        assert metrics[f"study/{names.label_key(s['setting'])}/n"] == s["n"]
    assert "study/lr 0.005/mean" in metrics  # "lr=0.005": the label, not an index
    for comp in report["comparisons"]:
        name = f"{names.label_key(comp['a'])} vs {names.label_key(comp['b'])}"
        assert metrics[f"study/{name}/diff"] == comp["diff"]
        assert metrics[f"study/{name}/ci_low"] == comp["ci_simultaneous"][0]
        assert metrics[f"study/{name}/p_holm"] == comp["p_adjusted"]
        assert tags[f"study.verdict.{name}"] == comp["verdict"]
    # The compute: 12 trials (the failed one ran too) x 0.25 CPU-hours each.
    cost = report["cost"]
    assert cost["trials"] == 12 and cost["cpu_hours"] == 3.0 and cost["gpu_hours"] == 0
    assert metrics["study/cpu_hours"] == 3.0 and metrics["study/gpu_hours"] == 0
    decided = sum(c["verdict"] in ("different", "equivalent") for c in report["comparisons"])
    assert cost["decided"] == decided
    if decided:
        assert metrics["study/cpu_hours_per_decided"] == 3.0 / decided
    assert any(line.startswith("Compute: 3 CPU-hours over 12 trials") for line in
               report["conclusions"])  # fmt: skip
    md = (study_folder(record.study_id) / "report.md").read_text()
    assert "## Compute" in md and "| total (12 trials) | 3 | 0 |" in md
    assert not any(k.startswith("study.") and v.lstrip().startswith(("{", "["))
                   for k, v in tags.items()), "a JSON blob as a tag"  # fmt: skip

    # The per-trial table, one row per trial; a second report replaces it, never appends.
    def table() -> dict:
        path = c.download_artifacts(run.info.run_id, "trials.json", str(tmp_path / "dl"))
        return json.loads(open(path).read())

    first = table()
    assert len(first["data"]) == len(report["per_trial"]) == 12
    assert first["columns"][:2] == ["trial", "setting"]
    assert main(["report", record.study_id, "--replicates", "0"]) == 0
    assert len(table()["data"]) == 12
    logged_tables = json.loads(c.get_run(run.info.run_id).data.tags["mlflow.loggedArtifacts"])
    assert {"path": "trials.json", "type": "table"} in logged_tables


def test_report_html_into_a_directory_fails_before_any_work(
    finished_study, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a SQLite store's artifacts go to ./mlruns
    record = finished_study(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert main(["report", record.study_id, "--html", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--html {tmp_path} is a directory; give a file name" in err
    assert not (study_folder(record.study_id) / "report.json").exists()

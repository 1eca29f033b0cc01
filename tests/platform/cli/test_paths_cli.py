"""Ids that could leave the state folder, crafted Tune state and broken study records: one line
on stderr, exit status 2, nothing read from or written outside the state folder, nothing
unpickled. Study folders are made by hand: refusing needs no cluster."""

from __future__ import annotations

import json
import pickle

import pytest

from sparse_rcnn.platform.cli.main import main
from sparse_rcnn.platform.orchestration.tune_state import sign

RULE = (
    "is not a valid name; use letters, digits, '_', '.' and '-', starting with a letter or "
    "digit, without '..', at most 200 characters"
)
REFUSE = "refusing to restore its Ray Tune state, which Tune unpickles (this can run code): "
TODO = "; if it was not tampered with, run the study again from its spec"


class _Touch:
    """Unpickling this creates ``path``: what a crafted ``tuner.pkl`` could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def record(study_id: str) -> dict:
    return {"study_id": study_id, "spec": {"name": "x", "job": "base.yaml"}, "base_job": {},
            "parent_run_id": "0" * 32, "tracking_uri": "http://127.0.0.1:1",
            "experiment": "x", "max_concurrent_trials": 1, "created": 0.0}  # fmt: skip


def make_study(folder, study_id: str | None = None):
    """A study folder with a study.json and a results.parquet placeholder."""
    folder.mkdir(parents=True)
    (folder / "study.json").write_text(json.dumps(record(study_id or folder.name)))
    (folder / "results.parquet").write_bytes(b"not parquet")
    return folder


def err_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.rstrip("\n")


def written(root) -> list[str]:
    return sorted(p.name for p in root.rglob("report.*"))


@pytest.mark.parametrize("bad", ["../../x", "../studies/../../x", "..", ".hidden"])
def test_report_and_resume_refuse_ids_that_leave_the_studies_folder(
    bad, state_dir, tmp_path, capsys
):
    make_study(tmp_path / "x")  # where ../../x points from <state>/studies
    for argv in (["report", bad], ["study", "--resume", bad]):
        assert main(argv) == 2
        assert err_line(capsys) == f"sparse-rcnn {argv[0]}: error: study id {bad!r} {RULE}"
    assert written(tmp_path) == []


def test_report_refuses_an_absolute_path(state_dir, tmp_path, capsys):
    victim = make_study(tmp_path / "victim")
    assert main(["report", str(victim)]) == 2
    assert err_line(capsys) == f"sparse-rcnn report: error: study id {str(victim)!r} {RULE}"
    assert written(tmp_path) == []


def test_a_study_folder_that_links_outside_is_refused(state_dir, tmp_path, capsys):
    victim = make_study(tmp_path / "victim", "evil")
    (state_dir / "studies").mkdir(parents=True)
    (state_dir / "studies" / "evil").symlink_to(victim)
    root = (state_dir / "studies").resolve()
    for argv in (["report", "evil"], ["study", "--resume", "evil"]):
        assert main(argv) == 2
        assert err_line(capsys) == (
            f"sparse-rcnn {argv[0]}: error: study id 'evil' resolves to {victim.resolve()}, "
            f"outside {root}; refused"
        )
    assert written(tmp_path) == []


def crafted_study(state_dir, marker, signed: bool):
    """A study folder whose tune/tuner.pkl creates ``marker`` when unpickled; ``signed``: the
    platform had signed a genuine tuner.pkl there first."""
    folder = make_study(state_dir / "studies" / "crafted-1")
    (folder / "tune").mkdir()
    if signed:
        (folder / "tune" / "tuner.pkl").write_bytes(pickle.dumps({"genuine": True}))
        sign(folder)
    (folder / "tune" / "tuner.pkl").write_bytes(pickle.dumps(_Touch(marker)))
    return folder


def test_the_crafted_payload_would_run_if_unpickled(tmp_path):
    """The control for the two tests below: unpickling the payload does create its marker."""
    pickle.loads(pickle.dumps(_Touch(tmp_path / "control")))
    assert (tmp_path / "control").exists()


def test_resume_refuses_an_unsigned_tuner_pkl_and_never_unpickles_it(state_dir, tmp_path, capsys):
    marker = tmp_path / "pwned"
    folder = crafted_study(state_dir, marker, signed=False)
    assert main(["study", "--resume", "crafted-1"]) == 2
    assert err_line(capsys) == (
        f"sparse-rcnn study: error: study crafted-1: {REFUSE}{(folder / 'tune').resolve()} has "
        f"no signatures (tune-state.sig.json missing), so this platform did not save it{TODO}"
    )
    assert not marker.exists()


def test_resume_refuses_a_replaced_tuner_pkl_and_never_unpickles_it(state_dir, tmp_path, capsys):
    marker = tmp_path / "pwned"
    crafted_study(state_dir, marker, signed=True)
    assert main(["study", "--resume", "crafted-1"]) == 2
    assert err_line(capsys) == (
        f"sparse-rcnn study: error: study crafted-1: {REFUSE}tune/tuner.pkl changed since this "
        f"platform saved it (HMAC mismatch){TODO}"
    )
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "is not valid JSON (Expecting property name enclosed in double quotes: "
                      "line 1 column 2 (char 1)); the study cannot be read"),
        ("[1, 2]", "must hold a JSON object; the study cannot be read"),
        (json.dumps({"study_id": "s-1"}), "is not a study record (missing: spec, base_job, "
         "parent_run_id, tracking_uri, experiment, max_concurrent_trials, created)"),
        (json.dumps({**record("s-1"), "extra": 1}), "is not a study record (unknown: extra)"),
        (json.dumps({**record("s-1"), "max_concurrent_trials": "2"}),
         ": max_concurrent_trials has the wrong type (str)"),
        (json.dumps(record("other")), "names study 'other', not 's-1'"),
        (json.dumps({**record("s-1"), "experiment": "../x"}),
         f": experiment name '../x' {RULE}"),
    ],
)  # fmt: skip
def test_a_broken_study_json_is_one_line(content, problem, state_dir, capsys):
    folder = state_dir / "studies" / "s-1"
    folder.mkdir(parents=True)
    (folder / "study.json").write_text(content)
    path = folder.resolve() / "study.json"
    sep = "" if problem.startswith(":") else " "
    for argv in (["report", "s-1"], ["study", "--resume", "s-1"]):
        assert main(argv) == 2
        assert err_line(capsys) == f"sparse-rcnn {argv[0]}: error: {path}{sep}{problem}"
    assert written(state_dir) == []


@pytest.mark.parametrize("action", ["logs", "stop"])
def test_jobs_refuse_a_submission_id_that_is_no_name_before_any_request(action, capsys):
    # Port 9 (discard) on loopback: were a request made, the error would be "cannot reach".
    argv = ["jobs", action, "../../api/version", "--address", "http://127.0.0.1:9"]
    assert main(argv) == 2
    assert err_line(capsys) == f"sparse-rcnn jobs: error: submission id '../../api/version' {RULE}"


def test_submit_refuses_a_submission_id_that_is_no_name(tmp_path, small_job, capsys):
    import yaml

    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(small_job()))
    argv = ["submit", str(spec), "--submission-id", "a/../b", "--address", "http://127.0.0.1:9"]
    assert main(argv) == 2
    assert err_line(capsys) == f"sparse-rcnn submit: error: submission id 'a/../b' {RULE}"


def test_report_replaces_a_planted_report_md_link_instead_of_writing_through_it(
    state_dir, tmp_path, small_job, capsys
):
    from sparse_rcnn.platform.orchestration.results import write_results
    from sparse_rcnn.platform.spec.study import METRICS, study_from_dict

    folder = state_dir / "studies" / "s-1"
    folder.mkdir(parents=True)
    data = {**record("s-1"), "spec": {"name": "s", "job": "base.yaml", "seeds": 3},
            "base_job": small_job()}  # fmt: skip
    (folder / "study.json").write_text(json.dumps(data))
    rows = []
    for plan in study_from_dict(data["spec"], data["base_job"]).trials:
        rows.append({"study_id": "s-1", "trial_key": plan.key, "tune_trial_id": plan.key,
                     "setting": plan.setting, "setting_label": plan.setting_label,
                     "source": plan.source, "replicate": plan.replicate, "seed": plan.seed,
                     "status": "ok", "error": None, "run_id": None, "wall_s": 1.0,
                     "reused": False, "eval_epochs": [2],
                     **{m: 0.3 + 0.01 * plan.replicate for m in METRICS},
                     **{f"eval_{m}": [0.3] for m in METRICS}})  # fmt: skip
    write_results(rows, folder / "results.parquet")
    outside = tmp_path / "bashrc"
    outside.write_text("mine\n")
    (folder / "report.md").symlink_to(outside)
    (folder / "report.html").symlink_to(outside)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / "figures").symlink_to(elsewhere)
    assert main(["report", "s-1", "--no-log", "--replicates", "0"]) == 0
    assert outside.read_text() == "mine\n"
    assert list(elsewhere.iterdir()) == []
    assert not (folder / "figures").is_symlink() and len(list((folder / "figures").iterdir())) == 6
    assert (
        not (folder / "report.md").is_symlink()
        and "## Conclusions" in (folder / "report.md").read_text()
    )
    assert sorted(p.name for p in folder.iterdir()) == [
        "figures", "report.html", "report.json", "report.md", "results.parquet", "study.json"
    ]  # fmt: skip

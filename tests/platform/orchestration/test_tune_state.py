"""Signed Tune state: sign() records what the platform saved, verify() refuses anything else."""

from __future__ import annotations

import json
import os
import stat

import pytest

from sparse_rcnn.platform.errors import PlatformError
from sparse_rcnn.platform.orchestration.tune_state import (
    SIGNATURES,
    TuneStateRefused,
    sign,
    verify,
)
from sparse_rcnn.platform.state_dir import KEY_FILE, state_key

REFUSE = (
    "study s1: refusing to restore its Ray Tune state, which Tune unpickles (this can run code): "
)
TODO = "; if it was not tampered with, run the study again from its spec"


@pytest.fixture
def folder(state_dir):
    """A study folder with a Tune state as Ray 2.60 lays it out."""
    path = state_dir / "studies" / "s1"
    trial = path / "tune" / "study_trial_abc_00000"
    trial.mkdir(parents=True)
    (path / "tune" / "tuner.pkl").write_bytes(b"tuner")
    (path / "tune" / "experiment_state-2026.json").write_text('{"trial_data": []}')
    (trial / "params.pkl").write_bytes(b"params")
    (trial / "result.json").write_text("{}\n")
    return path


def test_the_key_is_made_once_with_mode_600(state_dir):
    key = state_key()
    path = state_dir / KEY_FILE
    assert len(key) == 32 and state_key() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_key_others_can_read_is_refused(state_dir):
    state_key()
    os.chmod(state_dir / KEY_FILE, 0o644)
    with pytest.raises(PlatformError) as e:
        state_key()
    assert str(e.value) == (
        f"{state_dir / KEY_FILE} is readable by other users (mode 644); "
        f"run: chmod 600 {state_dir / KEY_FILE}"
    )


def test_signed_state_verifies_and_plain_data_may_change(folder):
    sign(folder)
    verify(folder, "s1")
    (folder / "tune" / "study_trial_abc_00000" / "result.json").write_text('{"a": 1}\n')
    verify(folder, "s1")  # JSON lines Tune never unpickles


def test_an_earlier_signed_version_still_verifies(folder):
    """Tune copies its state in the background: a killed driver may leave the previous one."""
    state = folder / "tune" / "experiment_state-2026.json"
    sign(folder)
    old = state.read_bytes()
    state.write_text('{"trial_data": [1]}')
    sign(folder)
    verify(folder, "s1")
    state.write_bytes(old)
    verify(folder, "s1")


def test_a_file_signed_in_the_staging_folder_verifies_once_copied(folder, tmp_path):
    """Tune saves into its staging folder and copies that into tune/ in the background: a
    driver killed right after the copy leaves a file that was signed while staged."""
    staged = tmp_path / "driver_artifacts"
    staged.mkdir()
    sign(folder)
    (staged / "experiment_state-2026.json").write_text('{"trial_data": [2]}')
    sign(folder, staged=staged)
    (folder / "tune" / "experiment_state-2026.json").write_text('{"trial_data": [2]}')
    verify(folder, "s1")


def test_unsigned_changed_new_and_linked_files_are_refused(folder, tmp_path):
    with pytest.raises(TuneStateRefused) as e:
        verify(folder, "s1")
    assert str(e.value) == (
        f"{REFUSE}{folder / 'tune'} has no signatures ({SIGNATURES} missing), so this platform "
        f"did not save it{TODO}"
    )
    sign(folder)
    (folder / "tune" / "tuner.pkl").write_bytes(b"crafted")
    with pytest.raises(TuneStateRefused) as e:
        verify(folder, "s1")
    assert str(e.value) == (
        f"{REFUSE}tune/tuner.pkl changed since this platform saved it (HMAC mismatch){TODO}"
    )
    (folder / "tune" / "tuner.pkl").write_bytes(b"tuner")
    (folder / "tune" / "study_trial_abc_00000" / "error.pkl").write_bytes(b"crafted")
    with pytest.raises(TuneStateRefused) as e:
        verify(folder, "s1")
    assert str(e.value) == (
        f"{REFUSE}tune/study_trial_abc_00000/error.pkl was not saved by this platform "
        f"(no signature){TODO}"
    )
    (folder / "tune" / "study_trial_abc_00000" / "error.pkl").unlink()
    (tmp_path / "elsewhere.pkl").write_bytes(b"crafted")
    (folder / "tune" / "searcher-state-2026.pkl").symlink_to(tmp_path / "elsewhere.pkl")
    sign(folder)  # never signs a link
    with pytest.raises(TuneStateRefused) as e:
        verify(folder, "s1")
    assert str(e.value) == f"{REFUSE}tune/searcher-state-2026.pkl is a symlink{TODO}"


def test_a_signature_from_another_state_dir_does_not_verify(folder, tmp_path, monkeypatch):
    sign(folder)
    monkeypatch.setenv("SPARSE_RCNN_STATE_DIR", str(tmp_path / "other-state"))
    with pytest.raises(TuneStateRefused, match="tune/experiment_state-2026.json changed"):
        verify(folder, "s1")


def test_a_signed_file_moved_to_another_name_does_not_verify(folder):
    sign(folder)
    tune = folder / "tune"
    data = (tune / "study_trial_abc_00000" / "params.pkl").read_bytes()
    (tune / "tuner.pkl").write_bytes(data)
    with pytest.raises(TuneStateRefused, match="tune/tuner.pkl changed"):
        verify(folder, "s1")


def _trial(config):
    from ray import tune

    tune.report({"score": config["x"]})


@pytest.mark.ray
def test_a_real_tune_run_is_signed_and_restores(local_ray, state_dir):
    """What Tune 2.60 writes under tune/ is signed by the callback and the final sign; the
    verified folder then restores."""
    from ray import tune

    from sparse_rcnn.platform.orchestration.tune_state import SignTuneState

    folder = state_dir / "studies" / "real-1"
    folder.mkdir(parents=True)
    tuner = tune.Tuner(
        tune.with_resources(_trial, {"cpu": 0.01}),
        param_space={"x": tune.grid_search([1, 2])},
        run_config=tune.RunConfig(
            name="tune", storage_path=str(folder), verbose=0, callbacks=[SignTuneState("real-1")]
        ),
    )
    sign(folder)
    tuner.fit()
    verify(folder, "real-1")  # the callback alone signed what Tune saved last
    sign(folder)
    signed = json.loads((folder / SIGNATURES).read_text())["files"]
    assert "tuner.pkl" in signed and any(k.startswith("experiment_state-") for k in signed)
    verify(folder, "real-1")
    restored = tune.Tuner.restore(str(folder / "tune"), trainable=_trial)
    assert sorted(r.metrics["score"] for r in restored.get_results()) == [1, 2]

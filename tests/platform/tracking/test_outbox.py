"""The tracking outbox without a server process: calls that return at once while nothing
answers, a journal that the next logger delivers once and in order, the bound, a refused
write, and the setting. (A real server killed mid-training:
tests/platform/orchestration/test_tracking_outage.py.)"""

from __future__ import annotations

import time

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from sparse_rcnn.platform.errors import InputError
from sparse_rcnn.platform.tracking import names
from sparse_rcnn.platform.tracking.outbox import (
    JOURNAL,
    OutboxLogger,
    TrackingUnavailable,
    outage_limit,
    outbox_folder,
)
from sparse_rcnn.platform.tracking.runs import RunLogger, create_run
from tests.conftest import free_port


@pytest.fixture
def store(tmp_path, monkeypatch):
    """``(uri, run_id)`` of a new run in a SQLite store."""
    monkeypatch.chdir(tmp_path)  # a SQLite store's artifacts go to ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return uri, create_run(uri, "outbox", "r", {"a": 1})


def test_writes_wait_for_an_absent_server_and_the_next_logger_delivers_them_once(store, tmp_path):
    uri, run_id = store
    folder = tmp_path / "outbox"
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    away = OutboxLogger(nobody, run_id, folder, outage_s=60, probe_s=0.05)
    started = time.perf_counter()
    for step in range(1, 201):
        away.log_metrics({"train/loss": 1000.0 - step, "train/lr": 0.1}, step)
    away.log_epoch(1, {"AP": 12.5, "APl": -1.0})
    away.log_image(np.full((8, 8, 3), 7, np.uint8), names.IMAGE_DETECTIONS, 1)
    away.log_png(b"\x89PNG fake", "evaluation/pr_curves.png")
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"203 logging calls took {elapsed:.2f} s with the server away"
    assert away.pending == 203 and away.outage_error() is None  # within the bound
    with pytest.raises(TrackingUnavailable, match=r"203 tracking writes not delivered"):
        away.close(wait_s=0.2)  # what a process that dies now leaves behind
    assert len((folder / JOURNAL).read_text().splitlines()) == 203

    # Steps 1-2 reached the run before the process died, unacknowledged.
    RunLogger(uri, run_id).log_metrics({"train/loss": 999.0, "train/lr": 0.1}, 1)
    RunLogger(uri, run_id).log_metrics({"train/loss": 998.0, "train/lr": 0.1}, 2)
    back = OutboxLogger(uri, run_id, folder, outage_s=60, probe_s=0.05)
    back.log_metrics({"train/loss": 1.0}, 201)  # after the journal's writes
    back.close()
    c = MlflowClient(uri)
    loss = c.get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in loss) == list(range(1, 202))  # each step once
    assert {m.step: m.value for m in loss} == {s: 1000.0 - s for s in range(1, 201)} | {201: 1.0}
    assert [m.value for m in c.get_metric_history(run_id, "val/AP")] == [12.5]
    assert "val/APl" not in c.get_run(run_id).data.metrics
    assert [a.path for a in c.list_artifacts(run_id, "evaluation")] == ["evaluation/pr_curves.png"]
    assert any("+step+1+" in a.path for a in c.list_artifacts(run_id, "images"))
    assert not folder.exists()


def test_past_the_bound_the_error_names_the_server_and_what_is_kept(store, tmp_path):
    _, run_id = store
    nobody = f"http://127.0.0.1:{free_port()}"
    logger = OutboxLogger(nobody, run_id, tmp_path / "outbox", outage_s=0.3, probe_s=0.05)
    logger.log_metrics({"train/loss": 1.0}, 1)
    time.sleep(0.5)
    error = logger.outage_error()
    assert error is not None and "\n" not in error
    assert error.startswith(f"tracking server {nobody} unreachable for ")
    assert error.endswith(
        f" s (limit SPARSE_RCNN_TRACKING_OUTAGE_S=0.3); 1 tracking writes not delivered are "
        f"kept in {tmp_path / 'outbox'}; resuming the job, or `sparse-rcnn deliver-tracking` on "
        "that folder, delivers them"
    )
    started = time.perf_counter()
    with pytest.raises(TrackingUnavailable, match="unreachable"):
        logger.close()
    assert time.perf_counter() - started < 1.0


def test_a_write_the_store_refuses_stops_with_its_message(store, tmp_path):
    uri, run_id = store
    logger = OutboxLogger(uri, run_id, tmp_path / "outbox", outage_s=60, probe_s=0.01)
    logger.log_metrics({"bad*name": 1.0}, 1)
    with pytest.raises(TrackingUnavailable, match=r"refuses a write: .*bad\*name"):
        logger.close()


def test_deliver_tracking_delivers_what_a_stopped_run_kept(store, tmp_path, capsys):
    from sparse_rcnn.platform.cli.main import main

    uri, run_id = store
    checkpoints = tmp_path / "checkpoints"
    away = OutboxLogger(f"http://127.0.0.1:{free_port()}", run_id,
                        outbox_folder(checkpoints, run_id), probe_s=0.05)  # fmt: skip
    for step in (1, 2, 3):
        away.log_metrics({"train/loss": 10.0 * step}, step)
    with pytest.raises(TrackingUnavailable):
        away.close(wait_s=0.1)
    capsys.readouterr()  # the logger's "unreachable" warning
    assert main(["deliver-tracking", str(tmp_path / "nothing-here"), "--tracking-uri", uri]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sparse-rcnn deliver-tracking: error: {tmp_path / 'nothing-here'}: no kept tracking "
        "writes (no tracking-outbox journal)"
    )
    assert main(["deliver-tracking", str(checkpoints), "--tracking-uri", uri]) == 0
    assert capsys.readouterr().out == f"delivered 3 tracking writes to run {run_id} ({uri})\n"
    loss = MlflowClient(uri).get_metric_history(run_id, "train/loss")
    assert {m.step: m.value for m in loss} == {1: 10.0, 2: 20.0, 3: 30.0}
    assert not (checkpoints / "tracking-outbox").exists()


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan", "inf"])
def test_the_outage_setting_must_be_positive_seconds(monkeypatch, value):
    monkeypatch.setenv("SPARSE_RCNN_TRACKING_OUTAGE_S", value)
    with pytest.raises(InputError, match=r"SPARSE_RCNN_TRACKING_OUTAGE_S='.*': expected a "):
        outage_limit()


def test_the_outage_setting_defaults_to_half_an_hour(monkeypatch):
    monkeypatch.delenv("SPARSE_RCNN_TRACKING_OUTAGE_S", raising=False)
    assert outage_limit() == 1800.0
    monkeypatch.setenv("SPARSE_RCNN_TRACKING_OUTAGE_S", "90")
    assert outage_limit() == 90.0

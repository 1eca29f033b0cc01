"""A disk that fills up while a checkpoint is written: the previous checkpoint survives and
loads, nothing half-written is left looking valid, the error says in one line what happened,
the MLflow run ends FAILED with it, and the job resumes from the intact checkpoint once there
is room. The disk is a real, small tmpfs where this process may mount one (root); elsewhere
the fault is injected into the checkpoint file's writes."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from sparse_rcnn.platform.checkpoints import native
from sparse_rcnn.platform.engine.local_reporter import LocalReporter
from sparse_rcnn.platform.orchestration.in_process import checkpoint_folder, run_job_in_process
from sparse_rcnn.platform.orchestration.train import JobFailed, create_job_run
from sparse_rcnn.platform.spec.job import JobSpec
from sparse_rcnn.platform.spec.load import validate
from sparse_rcnn.platform.tracking.runs import client
from sparse_rcnn.platform.tracking.store import resolve_tracking_uri

pytestmark = pytest.mark.slow


class Disk:
    """Where the checkpoints go, and how to fill it up: ``fill`` leaves less room than one
    more checkpoint needs, ``make_room`` undoes that."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch):
        self.root, self.monkeypatch = root, monkeypatch
        root.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=500m", "tmpfs", str(root)],
                                 capture_output=True)  # fmt: skip
        self.real = mounted.returncode == 0
        self.full = False

    def fill(self, one_checkpoint: int) -> None:
        self.full = True
        if self.real:
            stat = os.statvfs(self.root)
            room = stat.f_bavail * stat.f_frsize
            with open(self.root / "filler", "wb") as f:
                os.posix_fallocate(f.fileno(), 0, max(1, room - one_checkpoint // 2))
            return
        # No tmpfs here: the write fails as on a full disk, after some bytes went through.
        write = native._ErrorKeepingFile.write

        def write_until_full(keeper, data):
            if self.full and keeper.f.tell() + len(data) > one_checkpoint // 2:
                keeper.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                raise keeper.error
            return write(keeper, data)

        self.monkeypatch.setattr(native._ErrorKeepingFile, "write", write_until_full)

    def make_room(self) -> None:
        self.full = False
        (self.root / "filler").unlink(missing_ok=True)

    def close(self) -> None:
        if self.real:
            subprocess.run(["umount", "-l", str(self.root)], check=False)


@pytest.fixture
def disk(tmp_path, monkeypatch):
    d = Disk(tmp_path / "disk", monkeypatch)
    yield d
    d.close()


def test_a_full_disk_keeps_the_previous_checkpoint_and_fails_the_run_in_one_line(
    small_job, state_dir, disk, monkeypatch
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = small_job(**{"schedule.epochs": 3, "schedule.lr_steps": [2], "eval_interval": 1,
                        "max_failures": 1, "storage_path": str(disk.root),
                        "mlflow.experiment": "disk-full"})  # fmt: skip
    spec = validate(JobSpec, data, "test")
    uri = resolve_tracking_uri(None)
    run_id = create_job_run(spec, uri)
    folder = checkpoint_folder(spec, "full")
    first = folder / "checkpoint_epoch_0.pt"

    def on_report(metrics):
        if metrics["epoch"] == 0:  # epoch 1's checkpoint is written: now the disk fills up
            disk.fill(first.stat().st_size)

    reports: list[dict] = []
    with pytest.raises(JobFailed) as failed:
        run_job_in_process(spec, run_id, uri, "full",
                           on_report=lambda m: (reports.append(m), on_report(m)))  # fmt: skip
    message = str(failed.value)
    print(f"{'tmpfs' if disk.real else 'injected'}: {message}")
    expected = (f"disk full while writing the checkpoint after epoch 2 to "
                f"{folder / 'checkpoint_epoch_1.pt'}; the previous checkpoint {first} is "
                "intact")  # fmt: skip
    assert message == f"training run {run_id} stopped: {expected}"
    assert [r["epoch"] for r in reports] == [0]  # the failed epoch was not retried
    # Nothing half-written is left, least of all under a checkpoint's name; epoch 1's loads.
    left = sorted(p.name for p in folder.iterdir() if p.is_file())
    assert left == ["checkpoint_epoch_0.pt"], left
    assert LocalReporter(folder).latest_checkpoint()["epoch"] == 0
    assert torch.load(first, weights_only=True)["iteration"] == 4
    run = client(uri).get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["error"] == expected

    # Room again (500 MB holds the three checkpoints that keeping two needs at the peak): the
    # same name resumes from the intact checkpoint and finishes.
    disk.make_room()
    reports.clear()
    outcome = run_job_in_process(spec, run_id, uri, "full", on_report=reports.append)
    assert [r["epoch"] for r in reports] == [1, 2]
    assert client(uri).get_run(run_id).info.status == "FINISHED"
    assert outcome.checkpoint_path == str(folder / "checkpoint_epoch_2.pt")
    shutil.rmtree(folder)  # free the tmpfs before it is unmounted

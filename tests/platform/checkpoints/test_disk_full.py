"""A full disk while a model checkpoint is written (``save_checkpoint``, used by
``convert-checkpoint`` and for the run's final ``checkpoint/model.pt``): one line, the file
already there unchanged, no temporary file left. A real 1 MB tmpfs where this process may
mount one (root); elsewhere the fault is injected into the file's writes."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest
import torch

from sparse_rcnn.models.config import preset
from sparse_rcnn.platform.checkpoints import native
from sparse_rcnn.platform.checkpoints.native import save_checkpoint
from sparse_rcnn.platform.errors import OutputPathError


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """A folder with room for about 1 MB."""
    root = tmp_path / "disk"
    root.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root)],
                             capture_output=True)  # fmt: skip
    if mounted.returncode != 0:  # no tmpfs here: writes fail past 1 MB, as on a full disk
        write = native._ErrorKeepingFile.write

        def write_until_full(keeper, data):
            if keeper.f.tell() + len(data) > 2**20:
                keeper.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                raise keeper.error
            return write(keeper, data)

        monkeypatch.setattr(native._ErrorKeepingFile, "write", write_until_full)
    yield root
    if mounted.returncode == 0:
        subprocess.run(["umount", "-l", str(root)], check=False)


def test_a_full_disk_leaves_the_existing_checkpoint_unchanged(small_disk):
    cfg = preset("tiny")
    path = small_disk / "model.pt"
    save_checkpoint(path, {"w": torch.ones(1000)}, cfg, {"source": "first"})
    with pytest.raises(OutputPathError) as failed:
        save_checkpoint(path, {"w": torch.zeros(1_000_000)}, cfg, {"source": "second"})
    assert str(failed.value) == f"disk full while writing {path}; the existing file is unchanged"
    assert [p.name for p in small_disk.iterdir()] == ["model.pt"]  # no temporary file left
    kept = torch.load(path, weights_only=True)
    assert kept["provenance"] == {"source": "first"} and kept["state_dict"]["w"].sum() == 1000

    fresh = small_disk / "other.pt"
    with pytest.raises(OutputPathError, match=r"^disk full while writing .*other\.pt; nothing was"):
        save_checkpoint(fresh, {"w": torch.zeros(1_000_000)}, cfg, {})
    assert not fresh.exists()

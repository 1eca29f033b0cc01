"""Checkpoints in a local folder, for running the engine without Ray Train (tests, torchrun, a
one-worker study trial in its Tune trial's process), and the atomic, checked write of one
checkpoint file that Ray Train's reporter shares."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from sparse_rcnn.platform.checkpoints.native import torch_save
from sparse_rcnn.platform.errors import PlatformError
from sparse_rcnn.platform.output_files import NO_SPACE


class CheckpointWriteError(PlatformError, OSError):
    """A checkpoint could not be written (a full disk above all). Nothing half-written is
    left, the previous checkpoint is untouched, and the run is not restarted: the epoch would
    be trained again only to fail the same way until the user makes room."""


def write_checkpoint(state: dict[str, Any], path: Path, previous: Path | None) -> None:
    """Write the engine's checkpoint dict ``state`` (``state["epoch"]`` 0-based) to ``path``
    atomically: into a hidden temporary file beside it, flushed to disk, then renamed. On a
    failed write the temporary file is removed and :class:`CheckpointWriteError` says in one
    line what happened, which file, and that ``previous`` (the checkpoint a restart resumes
    from, or None) is intact."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch_save(state, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        what = "disk full" if e.errno in NO_SPACE else f"{e.strerror or e}"
        kept = "no earlier checkpoint exists"
        if previous is not None:
            kept = f"the previous checkpoint {previous} is intact"
        raise CheckpointWriteError(
            f"{what} while writing the checkpoint after epoch {int(state['epoch']) + 1} "
            f"to {path}; {kept}"
        ) from e


class LocalReporter:
    """Keeps ``checkpoint_epoch_<N>.pt`` files in ``folder``; the newest one is resumed from, so
    a later reporter on the same folder continues where this one stopped. ``keep``: how many of
    the newest files stay (None: all); older ones are removed only after a new one is written.
    Every report's metrics are kept in ``history`` (this process only)."""

    def __init__(self, folder: str | Path, keep: int | None = None):
        if keep is not None and keep < 1:
            raise ValueError(f"keep must be at least 1 (the checkpoint to resume from), got {keep}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.history: list[dict[str, float]] = []

    def _files(self) -> list[Path]:
        return sorted(
            self.folder.glob("checkpoint_epoch_*.pt"), key=lambda p: int(p.stem.rsplit("_", 1)[1])
        )

    def latest_path(self) -> Path | None:
        """The newest checkpoint file, or None."""
        files = self._files()
        return files[-1] if files else None

    def latest_checkpoint(self) -> dict[str, Any] | None:
        path = self.latest_path()
        return torch.load(path, map_location="cpu", weights_only=True) if path else None

    def report(self, metrics: dict[str, float], checkpoint: dict[str, Any] | None) -> None:
        """Record ``metrics``; write ``checkpoint`` (see :func:`write_checkpoint`, which raises
        :class:`CheckpointWriteError`), then drop the files past ``keep``."""
        self.history.append(dict(metrics))
        if checkpoint is not None:
            path = self.folder / f"checkpoint_epoch_{checkpoint['epoch']}.pt"
            write_checkpoint(checkpoint, path, self.latest_path())
            if self.keep is not None:
                for old in self._files()[: -self.keep]:
                    old.unlink(missing_ok=True)

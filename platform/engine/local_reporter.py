"""Checkpoints in a local folder, for running the engine without Ray Train (tests, torchrun, a
one-worker study trial in its Tune trial's process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


class LocalReporter:
    """Keeps ``checkpoint_epoch_<N>.pt`` files in ``folder``; the newest one is resumed from, so
    a later reporter on the same folder continues where this one stopped. ``keep``: how many of
    the newest files stay (None: all). Every report's metrics are kept in ``history`` (this
    process only)."""

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
        self.history.append(dict(metrics))
        if checkpoint is not None:
            path = self.folder / f"checkpoint_epoch_{checkpoint['epoch']}.pt"
            tmp = path.with_suffix(".tmp")
            torch.save(checkpoint, tmp)
            tmp.replace(path)
            if self.keep is not None:
                for old in self._files()[: -self.keep]:
                    old.unlink(missing_ok=True)

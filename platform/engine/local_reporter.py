"""Checkpoints in a local folder, for running the engine without Ray (tests, torchrun)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


class LocalReporter:
    """Keeps ``checkpoint_epoch_<N>.pt`` files in ``folder``; the newest one is resumed from.
    Every report's metrics are kept in ``history`` (this process only)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.history: list[dict[str, float]] = []

    def _files(self) -> list[Path]:
        return sorted(
            self.folder.glob("checkpoint_epoch_*.pt"), key=lambda p: int(p.stem.rsplit("_", 1)[1])
        )

    def latest_checkpoint(self) -> dict[str, Any] | None:
        files = self._files()
        return torch.load(files[-1], map_location="cpu", weights_only=True) if files else None

    def report(self, metrics: dict[str, float], checkpoint: dict[str, Any] | None) -> None:
        self.history.append(dict(metrics))
        if checkpoint is not None:
            path = self.folder / f"checkpoint_epoch_{checkpoint['epoch']}.pt"
            tmp = path.with_suffix(".tmp")
            torch.save(checkpoint, tmp)
            tmp.replace(path)

"""Resolve a job's dataset section to annotation files and image folders.

A synthetic dataset is generated on first use under the state directory, keyed by its settings.
Generation is deterministic, so every node of a cluster can make its own identical copy; it is
written to a temporary folder and renamed into place, so concurrent workers never see a half
written dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sparse_rcnn.platform.data.synthetic import make_synthetic, split_paths


@dataclass(frozen=True)
class DatasetPaths:
    train_ann: str
    train_images: str
    val_ann: str
    val_images: str


def synthetic_dataset(root: Path, images: int, seed: int, val_fraction: float, min_size: int,
                      max_size: int, difficulty: str = "standard") -> DatasetPaths:  # fmt: skip
    """Paths of the synthetic dataset with these settings, generating it under ``root`` if
    absent."""
    settings = dict(images=images, seed=seed, val_fraction=val_fraction, min_size=min_size,
                    max_size=max_size, difficulty=difficulty)  # fmt: skip
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    final = root / f"synthetic-{key}"
    if not (final / ".complete").exists():
        tmp = root / f".synthetic-{key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        make_synthetic(tmp, num_images=images, seed=seed, val_fraction=val_fraction,
                       min_size=min_size, max_size=max_size, difficulty=difficulty)  # fmt: skip
        (tmp / ".complete").write_text(json.dumps(settings))
        try:
            tmp.rename(final)
        except OSError:  # another process finished first; its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    (train_ann, train_images), (val_ann, val_images) = (
        split_paths(final, "train"),
        split_paths(final, "val"),
    )
    return DatasetPaths(str(train_ann), str(train_images), str(val_ann), str(val_images))

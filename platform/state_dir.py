"""The project-local state directory of the embedded defaults.

``$SPARSE_RCNN_STATE_DIR`` if set, else ``./.sparse_rcnn`` in the working directory: the SQLite
MLflow store and artifacts, generated datasets and local checkpoints live there, so a single
machine needs no server or bucket.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "SPARSE_RCNN_STATE_DIR"


def state_dir() -> Path:
    path = Path(os.environ.get(ENV) or Path.cwd() / ".sparse_rcnn").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path

"""Where runs are tracked: a tracking server, or the embedded SQLite store.

The embedded default is ``sqlite:///<state dir>/mlflow.db`` with artifacts in
``<state dir>/mlartifacts``; the CLI and ``sparse-rcnn ui`` use the same pair.
"""

from __future__ import annotations

import os
from pathlib import Path

from sparse_rcnn.platform.state_dir import state_dir


def embedded_uri() -> str:
    return f"sqlite:///{state_dir() / 'mlflow.db'}"


def embedded_artifact_root() -> Path:
    path = state_dir() / "mlartifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_tracking_uri(configured: str | None) -> str:
    """The spec's URI, else ``$MLFLOW_TRACKING_URI``, else the embedded store."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or embedded_uri()


def is_local_store(uri: str) -> bool:
    """True for stores that live in this machine's files (other nodes cannot share them)."""
    return uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri

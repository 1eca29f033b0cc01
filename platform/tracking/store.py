"""Where runs are tracked: a tracking server, or the embedded SQLite store.

The embedded default is ``sqlite:///<state dir>/mlflow.db`` with artifacts in
``<state dir>/mlartifacts``; the CLI and ``sparse-rcnn ui`` use the same pair.
"""

from __future__ import annotations

import os
from pathlib import Path

from sparse_rcnn.platform.redact import PASSWORD_ENV, USERNAME_ENV, split_credentials
from sparse_rcnn.platform.state_dir import state_dir


def embedded_uri() -> str:
    return f"sqlite:///{state_dir() / 'mlflow.db'}"


def embedded_artifact_root() -> Path:
    path = state_dir() / "mlartifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_tracking_uri(configured: str | None) -> str:
    """The spec's URI, else ``$MLFLOW_TRACKING_URI``, else the embedded store.

    Credentials in an http(s) URI (``https://user:password@host``) are moved into
    ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` of this process, which the MLflow
    client reads and ``connect_tracked`` hands to every Ray worker; the URI that comes back, and
    that is logged, printed and passed around, has none."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or embedded_uri()
    if uri.startswith(("http://", "https://")):
        uri, credentials = split_credentials(uri)
        os.environ.update(credentials)
    return uri


def credential_env() -> dict[str, str]:
    """The MLflow client's credential variables set in this process (for the Ray workers)."""
    return {k: os.environ[k] for k in (USERNAME_ENV, PASSWORD_ENV) if os.environ.get(k)}


def is_local_store(uri: str) -> bool:
    """True for stores that live in this machine's files (other nodes cannot share them)."""
    return uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri

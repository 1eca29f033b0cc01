"""The project-local state directory of the embedded defaults, and its secret key.

``$SPARSE_RCNN_STATE_DIR`` if set, else ``./.sparse_rcnn`` in the working directory: the SQLite
MLflow store and artifacts, generated datasets and local checkpoints live there, so a single
machine needs no server or bucket.

``state.key`` (mode 0600) is a random key made once per state directory. The platform signs the
Ray Tune state it saves with it (HMAC-SHA256, ``orchestration.tune_state``), so that a study
folder restores only state this platform wrote.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from sparse_rcnn.platform.errors import PlatformError

ENV = "SPARSE_RCNN_STATE_DIR"
KEY_FILE = "state.key"
KEY_BYTES = 32


def state_dir() -> Path:
    path = Path(os.environ.get(ENV) or Path.cwd() / ".sparse_rcnn").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_key() -> bytes:
    """The state directory's secret key, created (0600, atomically) on first use. Refuses a key
    file that is a symlink, is readable by others or has the wrong length."""
    path = state_dir() / KEY_FILE
    if not path.exists() and not path.is_symlink():
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(KEY_BYTES))
            try:
                os.link(tmp, path)  # fails if another process made the key first: use theirs
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        raise PlatformError(f"{path} is not a regular file; remove it to make a new key")
    if info.st_mode & 0o077:
        raise PlatformError(
            f"{path} is readable by other users (mode {stat.S_IMODE(info.st_mode):o}); "
            f"run: chmod 600 {path}"
        )
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise PlatformError(f"{path} holds {len(key)} bytes, not {KEY_BYTES}; remove it")
    return key

"""Output files the commands write: checked before the work starts, replaced atomically.

A command checks where it will write first (:func:`check_output_file`), so a typo in ``--out``
fails in a second instead of after all the inference. It then writes through
:func:`atomic_write`: the bytes go to a hidden temporary file beside the target, which replaces
the target only once complete; the temporary file is removed on every failure path (an error,
a full disk, Ctrl-C), so a failed write leaves neither a partial target nor a ``*.tmp``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from sparse_rcnn.platform.errors import OutputPathError

# OS errors that mean "no room": the disk or a quota is full, or the file size limit is hit.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def check_output_file(path: str | Path, option: str = "", *, create_parent: bool = False) -> Path:
    """Refuse an output file location that cannot be written; returns ``path`` as a Path.

    ``option`` (e.g. ``"--out"``) prefixes the messages. Refused: ``path`` is a directory; a
    folder on the way is a file; the parent folder is missing (unless ``create_parent``, which
    leaves the creation to the writer); the nearest existing folder is not writable.
    Raises :class:`OutputPathError`.
    """
    path = Path(path)
    label = f"{option} {path}" if option else str(path)
    if path.is_dir():
        raise OutputPathError(f"{label} is a directory; give a file name")
    existing = _writable_ancestor(path.parent, label)
    if existing != path.parent and not create_parent:
        raise OutputPathError(f"{label}: folder {path.parent} does not exist")
    return path


def check_output_folder(path: str | Path, option: str = "") -> Path:
    """Refuse an output folder (created if missing) that is a file, lies under a file or
    cannot be written; returns ``path`` as a Path. Raises :class:`OutputPathError`."""
    path = Path(path)
    label = f"{option} {path}" if option else str(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{label} is a file, not a folder")
    _writable_ancestor(path, label)
    return path


def _writable_ancestor(folder: Path, label: str) -> Path:
    """The nearest existing folder at or above ``folder``; refused when it is a file or is
    not writable."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(f"{label}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{label}: folder {existing} is not writable")
    return existing


def atomic_write(
    path: str | Path,
    write: Callable[[BinaryIO], None],
    option: str = "",
    *,
    create_parent: bool = False,
) -> None:
    """Call ``write`` on a temporary binary file beside ``path``, then move it onto ``path``.

    The location is checked as in :func:`check_output_file`; OS errors while writing become
    :class:`OutputPathError` naming the file (a full disk: ``disk full while writing PATH;
    ...``). The temporary file never outlives this call.
    """
    path = check_output_file(path, option, create_parent=create_parent)
    label = f"{option} {path}" if option else str(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    existed = path.exists()
    try:
        if create_parent:
            path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
        tmp.replace(path)
    except OSError as e:
        if e.errno in NO_SPACE:
            kept = "the existing file is unchanged" if existed else "nothing was written"
            raise OutputPathError(f"disk full while writing {label}; {kept}") from e
        raise OutputPathError(f"cannot write {label}: {e.strerror or e}") from e
    finally:
        tmp.unlink(missing_ok=True)

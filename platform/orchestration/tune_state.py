"""Signed Ray Tune state: a study folder restores only Tune state this platform saved.

``Tuner.restore`` unpickles what it finds in the study's ``tune/`` folder (Ray 2.60):
``tuner.pkl``; the newest ``experiment_state-*.json``, whose trial fields are cloudpickle
blobs; the search algorithm's ``basic-variant-state-*.json`` / ``search_gen_state-*.json`` /
``searcher-state-*.pkl`` and ``callback-states-*.pkl`` (pickles despite some names); and, for
the result grid, each trial's ``error.pkl``. A crafted file there runs code on restore.

So the driver signs every file under ``tune/`` (except the plain-data files in
:data:`PLAIN_DATA`, which Tune reads as JSON or CSV) with HMAC-SHA256 under the state
directory's key (:func:`~sparse_rcnn.platform.state_dir.state_key`, mode 0600) whenever they
may have changed: after the Tuner is created or restored, after every step of Tune's loop
(:class:`SignTuneState`, cheap: only files whose size or mtime changed are read again) and when
``fit`` returns or is interrupted. Tune saves into a driver staging folder and copies that into
``tune/`` in a background thread, so the callback signs the staging folder as well: a file
reaches ``tune/`` already signed unless the copy finishes before the step that saved it ends.
The signatures live next to ``tune/`` in :data:`SIGNATURES`, the last :data:`KEEP` per file,
because a driver killed mid-copy may leave either version.

:func:`verify` runs before any restore and refuses (one line, :class:`TuneStateRefused`) a
folder with no signatures, a symlink, or a file whose HMAC is not one that was recorded. One
case it may refuse although no one tampered: a driver killed in the instant between a
background copy and the end of the Tune step that saved it; the study then has to be started
again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

from ray import tune

from sparse_rcnn.platform.errors import PlatformError
from sparse_rcnn.platform.orchestration.study_record import TUNE_NAME, studies_root
from sparse_rcnn.platform.output_files import atomic_write
from sparse_rcnn.platform.state_dir import state_key

SIGNATURES = "tune-state.sig.json"
KEEP = 8
PLAIN_DATA = ("result.json", "progress.csv", "params.json", "error.txt")
PLAIN_PREFIXES = ("events.out.tfevents",)
_DOMAIN = b"sparse-rcnn tune state v1\0"


class TuneStateRefused(PlatformError):
    """The Tune state of a study folder is not what this platform saved; it is not restored."""


def _is_plain(name: str) -> bool:
    return name in PLAIN_DATA or name.startswith(PLAIN_PREFIXES)


def _files(tune_dir: Path) -> dict[str, Path]:
    """``{relative posix path: path}`` of every file under ``tune_dir`` that Tune may unpickle
    (symlinks included, whatever they point to)."""
    out = {}
    for root, dirs, files in os.walk(tune_dir):
        base = Path(root)
        for name in [*files, *(d for d in dirs if (base / d).is_symlink())]:
            if not _is_plain(name) or (base / name).is_symlink():
                out[(base / name).relative_to(tune_dir).as_posix()] = base / name
    return out


def _digest(key: bytes, rel: str, path: Path) -> str:
    """HMAC-SHA256 over the file's relative path and bytes, so a signed file cannot be moved to
    another name."""
    mac = hmac.new(key, _DOMAIN + rel.encode() + b"\0", hashlib.sha256)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            mac.update(chunk)
    return mac.hexdigest()


def _load(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / SIGNATURES).read_text())
    except (OSError, ValueError):
        return {"files": {}, "stat": {}}
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return {"files": {}, "stat": {}}
    data.setdefault("stat", {})
    return data


def sign(folder: Path, tune_name: str = "tune", staged: Path | None = None) -> None:
    """Record the HMAC of every changed file under ``folder / tune_name`` and, when given, under
    ``staged``: Tune's driver staging folder, whose files Tune copies into ``tune/`` in the
    background. Symlinks are never signed, so :func:`verify` refuses them."""
    data = _load(folder)
    files, seen = data["files"], data["stat"]
    key: bytes | None = None
    changed = False
    sources = [("", folder / tune_name)] + ([("staged:", staged)] if staged else [])
    for tag, root in sources:
        if not root.is_dir():
            continue
        for rel, path in _files(root).items():
            try:
                info = os.lstat(path)
            except FileNotFoundError:  # Tune replaced it between the walk and now
                continue
            if path.is_symlink():
                continue
            mark = [info.st_size, info.st_mtime_ns]
            if seen.get(tag + rel) == mark and rel in files:
                continue
            key = key or state_key()
            try:
                digest = _digest(key, rel, path)
            except FileNotFoundError:
                continue
            history = [d for d in files.get(rel, []) if d != digest]
            files[rel] = [*history, digest][-KEEP:]
            seen[tag + rel] = mark
            changed = True
    if changed:
        text = json.dumps(data, indent=0, sort_keys=True).encode()
        atomic_write(folder / SIGNATURES, lambda f: f.write(text))


def verify(folder: Path, study_id: str, tune_name: str = "tune") -> None:
    """Raise :class:`TuneStateRefused` unless every file Tune may unpickle under
    ``folder / tune_name`` has an HMAC recorded by :func:`sign`."""
    tune_dir = folder / tune_name
    refuse = (
        f"study {study_id}: refusing to restore its Ray Tune state, which Tune unpickles "
        "(this can run code): "
    )
    todo = "; if it was not tampered with, run the study again from its spec"
    if not (folder / SIGNATURES).is_file():
        raise TuneStateRefused(
            f"{refuse}{tune_dir} has no signatures ({SIGNATURES} missing), so this platform "
            f"did not save it{todo}"
        )
    files = _load(folder)["files"]
    key = state_key()
    for rel, path in sorted(_files(tune_dir).items()):
        if path.is_symlink():
            raise TuneStateRefused(f"{refuse}{tune_name}/{rel} is a symlink{todo}")
        known = files.get(rel)
        if not isinstance(known, list) or not known:
            raise TuneStateRefused(
                f"{refuse}{tune_name}/{rel} was not saved by this platform (no signature){todo}"
            )
        digest = _digest(key, rel, path)
        if not any(isinstance(d, str) and hmac.compare_digest(d, digest) for d in known):
            raise TuneStateRefused(
                f"{refuse}{tune_name}/{rel} changed since this platform saved it "
                f"(HMAC mismatch){todo}"
            )


class SignTuneState(tune.Callback):
    """Signs the study's Tune state (``tune_name``: a sequential study has one per wave) after
    every step of Tune's loop and at the end. Pickled into ``tuner.pkl`` with the study id and
    the state's name only: the key stays in the state directory."""

    def __init__(self, study_id: str, tune_name: str = TUNE_NAME):
        self.study_id, self.tune_name = study_id, tune_name

    def __getstate__(self) -> dict[str, Any]:
        return {"study_id": self.study_id, "tune_name": self.tune_name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def _sign(self, trials: list) -> None:
        # Trial.local_experiment_path: the driver staging folder Tune saves into and then
        # copies to tune/ in a background thread. Signing it too closes the gap between that
        # copy and the next step.
        staged = getattr(trials[0], "local_experiment_path", None) if trials else None
        sign(studies_root() / self.study_id, self.tune_name, Path(staged) if staged else None)

    def on_step_end(self, iteration, trials, **info):
        self._sign(trials)

    def on_experiment_end(self, trials, **info):
        self._sign(trials)

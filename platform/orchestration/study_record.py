"""A study's saved state: its folder under the state directory and ``study.json``.

Layout of a study folder (``<state dir>/studies/<STUDY_ID>/``)::

    study.json          what resume and report need: the study and base job, the parent MLflow
                        run, the tracking URI, the concurrency (:class:`StudyRecord`)
    tune/               Ray Tune's experiment state (``Tuner.restore`` reads it)
    results.parquet     one row per trial, written when the study ends (also a parent-run artifact)
    timing.json         the wall time of every ``Tuner.fit()`` (start and resumes)
    report.md/.json     written by ``sparse-rcnn report`` (and at the end of ``study``)
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sparse_rcnn.platform.errors import PlatformError
from sparse_rcnn.platform.names import InvalidName, check_name, path_under
from sparse_rcnn.platform.spec.study import Study, study_from_dict
from sparse_rcnn.platform.state_dir import state_dir

STUDY_FILE = "study.json"
TUNE_NAME = "tune"
RESULTS_FILE = "results.parquet"


class StudyError(PlatformError, RuntimeError):
    """A study cannot start or resume; the message says why."""


@dataclass
class StudyRecord:
    """``study.json``: everything needed to resume or report a study without its YAML."""

    study_id: str
    spec: dict[str, Any]
    base_job: dict[str, Any]
    parent_run_id: str
    tracking_uri: str
    experiment: str
    max_concurrent_trials: int
    created: float

    def save(self, folder: Path) -> None:
        tmp = folder / (STUDY_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(folder / STUDY_FILE)

    @classmethod
    def load(cls, folder: Path) -> StudyRecord:
        """The record in ``folder``; :class:`StudyError` (one line) when the file is missing,
        not JSON, lacks a field, has a field of the wrong type or names another study."""
        path = folder / STUDY_FILE
        if not path.is_file():
            raise StudyError(f"no study at {folder} ({STUDY_FILE} missing)")
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise StudyError(f"{path} is not valid JSON ({e}); the study cannot be read") from None
        if not isinstance(data, dict):
            raise StudyError(f"{path} must hold a JSON object; the study cannot be read")
        fields = [f.name for f in dataclasses.fields(cls)]
        missing = [k for k in fields if k not in data]
        unknown = [k for k in data if k not in fields]
        if missing or unknown:
            what = "; ".join(
                f"{label}: {', '.join(keys)}"
                for label, keys in (("missing", missing), ("unknown", unknown))
                if keys
            )
            raise StudyError(f"{path} is not a study record ({what})")
        for key, kind in _RECORD_TYPES.items():
            if not isinstance(data[key], kind) or isinstance(data[key], bool):
                raise StudyError(f"{path}: {key} has the wrong type ({type(data[key]).__name__})")
        try:
            check_name("study id", data["study_id"])
            check_name("experiment name", data["experiment"])
        except InvalidName as e:
            raise StudyError(f"{path}: {e}") from None
        if data["study_id"] != folder.name:
            raise StudyError(f"{path} names study {data['study_id']!r}, not {folder.name!r}")
        return cls(**data)

    def study(self) -> Study:
        return study_from_dict(self.spec, self.base_job)


_RECORD_TYPES: dict[str, type | tuple[type, ...]] = {
    "study_id": str,
    "spec": dict,
    "base_job": dict,
    "parent_run_id": str,
    "tracking_uri": str,
    "experiment": str,
    "max_concurrent_trials": int,
    "created": (int, float),
}


def studies_root() -> Path:
    return state_dir() / "studies"


def study_folder(study_id: str) -> Path:
    """The folder of an existing study; :class:`~sparse_rcnn.platform.names.InvalidName` or
    :class:`~sparse_rcnn.platform.names.PathEscape` for an id that could leave the studies
    folder, :class:`StudyError` for an unknown one."""
    folder = path_under(studies_root(), study_id, "study id")
    if not (folder / STUDY_FILE).is_file():
        known = sorted(p.name for p in studies_root().glob("*") if (p / STUDY_FILE).is_file())
        hint = f"; known studies: {', '.join(known[-10:])}" if known else ""
        raise StudyError(f"unknown study {study_id!r} (no {folder / STUDY_FILE}){hint}")
    return folder


def new_study_id(name: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    study_id = f"{name}-{stamp}"
    n = 1
    while (studies_root() / study_id).exists():
        n += 1
        study_id = f"{name}-{stamp}-{n}"
    return study_id


def record_timing(folder: Path, wall_s: float, concurrency: int) -> None:
    """Append one ``Tuner.fit()``'s wall time to ``timing.json`` (one entry per start or
    resume), for packing-efficiency measurements (``bench/study_packing.py``)."""
    path = folder / "timing.json"
    fits = json.loads(path.read_text()) if path.is_file() else []
    fits.append({"wall_s": wall_s, "concurrency": concurrency, "ended": time.time()})
    path.write_text(json.dumps(fits, indent=1))

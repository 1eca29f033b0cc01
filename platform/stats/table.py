"""A results table: one row per run, the input of every analysis (studies and ``analyze``).

Columns: ``setting`` (str), ``seed`` (int), ``value`` (float; NaN marks a failed run), optional
``source`` (``all``, ``init``, ``data_order``, ``augmentation``, ``nondeterminism``; default
``all``), optional ``replicate`` (int: rows with the same replicate in different settings used
the same seeds, so they are paired) and optional ``wave`` (int >= 1: the wave of a sequential
study that ran the row; with it ``analyze`` adds the sequential analysis). ``read_table`` loads
a CSV or Parquet file with pyarrow and checks it; every problem is one ``TableError`` line
naming the file, the column and the first bad row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sparse_rcnn.platform.errors import PlatformError

SOURCES = ("all", "init", "data_order", "augmentation", "nondeterminism")


class TableError(PlatformError, ValueError):
    """A results table that cannot be analysed; the message names the file and the problem."""


@dataclass(frozen=True)
class Run:
    """One run (a row of the table); ``value`` is in the table's units after scaling."""

    setting: str
    seed: int | None
    value: float
    source: str = "all"
    replicate: int | None = None
    key: str = ""  # an id for the run (trial key in a study; row number in a table)
    wave: int | None = None  # the wave (from 1) of a sequential study that ran it

    @property
    def failed(self) -> bool:
        return not math.isfinite(self.value)


def check_runs(runs: Sequence[Run], name: str = "table", *, min_runs: int = 2) -> None:
    """Refuse tables that cannot be analysed: no rows, unknown source, duplicate
    setting+seed+source (or setting+replicate+source) rows, fewer than ``min_runs`` finished
    runs in a setting's main group (a study report passes 0: failed trials are reported, not
    refused)."""
    if not runs:
        raise TableError(f"{name}: no rows")
    seen: dict[tuple, int] = {}
    for i, r in enumerate(runs):
        if r.source not in SOURCES:
            raise TableError(
                f"{name}: row {i + 1}: source {r.source!r} is not one of {', '.join(SOURCES)}"
            )
        ident = (r.setting, r.source, r.seed if r.replicate is None else ("r", r.replicate))
        if r.source == "nondeterminism" and r.replicate is None:
            continue  # nondeterminism repeats identical seeds by design
        if ident in seen:
            what = "seed" if r.replicate is None else "replicate"
            val = r.seed if r.replicate is None else r.replicate
            raise TableError(
                f"{name}: rows {seen[ident] + 1} and {i + 1} repeat setting {r.setting!r}, "
                f"{what} {val}, source {r.source!r}"
            )
        seen[ident] = i
    waved = [r.wave is not None for r in runs]
    if any(waved) and not all(waved):
        i = waved.index(False)
        raise TableError(f"{name}: row {i + 1} has no wave while other rows have one")
    for i, r in enumerate(runs):
        if r.wave is not None and r.wave < 1:
            raise TableError(f"{name}: row {i + 1}: wave {r.wave}: waves count from 1")
    settings = list(dict.fromkeys(r.setting for r in runs))
    for s in settings:
        mine = [r for r in runs if r.setting == s]
        main = [r for r in mine if r.source == "all"] or mine
        ok = sum(not r.failed for r in main)
        if ok < min_runs:
            raise TableError(
                f"{name}: setting {s!r} has {ok} finished run(s); each setting needs at least "
                f"{min_runs}"
            )


def read_table(
    path: str | Path,
    *,
    metric: str = "value",
    scale: float = 1.0,
) -> list[Run]:
    """Read a CSV (``.csv``) or Parquet (``.parquet``/``.pq``) results table into runs.

    ``metric`` names the value column (default ``value``); values are multiplied by
    ``scale``. Raises ``TableError`` for a missing file, an unreadable one, a missing column,
    a non-numeric value, a non-integer seed, replicate or wave, or any ``check_runs`` problem.
    """
    import pyarrow as pa

    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: no such file")
    if not math.isfinite(scale) or scale == 0:
        raise TableError(f"--scale must be a finite non-zero number, got {scale}")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        elif path.suffix.lower() == ".csv":
            import csv as header_csv

            from pyarrow import csv

            # Every column as text (a setting "01" stays "01"); types are checked below, naming
            # the column and the row. The header line alone names the columns.
            with path.open(newline="") as f:
                header = next(header_csv.reader(f), [])
            table = csv.read_csv(
                path,
                convert_options=csv.ConvertOptions(column_types=dict.fromkeys(header, pa.string())),
            )
        else:
            raise TableError(f"{path}: expected a .csv or .parquet file")
    except TableError:
        raise
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TableError(f"{path}: cannot read the table: {first}") from None
    cols = table.column_names
    missing = [c for c in ("setting", "seed", metric) if c not in cols]
    if missing:
        hint = f" (use --metric to name the value column; columns: {', '.join(cols)})"
        raise TableError(f"{path}: missing column(s) {', '.join(missing)}{hint}")
    data = {c: table.column(c).to_pylist() for c in cols}
    n = table.num_rows
    settings = [_text(path, "setting", i, v) for i, v in enumerate(data["setting"])]
    seeds = [_int(path, "seed", i, v) for i, v in enumerate(data["seed"])]
    values = [_float(path, metric, i, v) * scale for i, v in enumerate(data[metric])]
    sources = (
        [_text(path, "source", i, v) for i, v in enumerate(data["source"])]
        if "source" in data
        else ["all"] * n
    )
    reps = (
        [_int(path, "replicate", i, v) for i, v in enumerate(data["replicate"])]
        if "replicate" in data
        else [None] * n
    )
    waves = (
        [_int(path, "wave", i, v) for i, v in enumerate(data["wave"])]
        if "wave" in data
        else [None] * n
    )
    runs = [
        Run(settings[i], seeds[i], values[i], sources[i], reps[i], f"row{i + 1}", waves[i])
        for i in range(n)
    ]
    check_runs(runs, str(path))
    return runs


def _text(path: Path, col: str, i: int, v: object) -> str:
    if v is None or (isinstance(v, str) and not v.strip()):
        raise TableError(f"{path}: column {col!r}, row {i + 1}: empty value")
    return str(v).strip()


def _int(path: Path, col: str, i: int, v: object) -> int | None:
    if v is None or v == "":
        if col == "replicate":
            return None
        raise TableError(f"{path}: column {col!r}, row {i + 1}: empty value")
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TableError(f"{path}: column {col!r}, row {i + 1}: {v!r} is not an integer") from None
    if isinstance(v, bool) or not math.isfinite(f) or f != int(f):
        raise TableError(f"{path}: column {col!r}, row {i + 1}: {v!r} is not an integer")
    return int(f)


def _float(path: Path, col: str, i: int, v: object) -> float:
    if v is None or v == "":
        return math.nan  # a failed run
    if isinstance(v, bool):
        raise TableError(f"{path}: column {col!r}, row {i + 1}: {v!r} is not a number")
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TableError(f"{path}: column {col!r}, row {i + 1}: {v!r} is not a number") from None
    if math.isinf(f):
        raise TableError(f"{path}: column {col!r}, row {i + 1}: {v!r} is not a finite number")
    return f

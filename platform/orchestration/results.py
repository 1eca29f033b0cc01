"""The study's results table: one row per trial, from Tune's results, as Parquet.

Metric columns (``AP`` ... and the ``eval_AP`` ... histories) are in AP points; the file says
so in its schema metadata (``ap_unit``). Tables written before that, in COCO fractions, are
read back in points."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sparse_rcnn.platform.spec.study import METRICS


def results_table(grid, record) -> list[dict[str, Any]]:
    """Rows (trial order of the study) from a Tune ``ResultGrid``: the plan (setting, source,
    replicate, seeds), the status, the final metrics (NaN unless the trial finished "ok"), the
    per-evaluation history and the wall time."""
    rows = []
    for result in grid:
        plan = result.config["trial"]
        metrics = result.metrics or {}
        if metrics.get("final"):
            status = metrics.get("status", "ok")
        elif result.error is not None:
            status = "error"
        else:
            status = "unfinished"
        row: dict[str, Any] = {
            "study_id": record.study_id,
            "trial_key": plan["key"],
            "tune_trial_id": getattr(result, "trial_id", None) or _trial_id(result),
            "setting": plan["setting"],
            "setting_label": plan["setting_label"],
            "source": plan["source"],
            "replicate": plan["replicate"],
            "seed": plan["seed"],
            **{f"seed_{k}": v for k, v in plan["seeds"].items()},
            **{f"param.{k}": _scalar(v) for k, v in plan["overrides"].items()},
            "status": status,
            "error": metrics.get("error") or (str(result.error)[:2000] if result.error else None),
            "run_id": metrics.get("run_id"),
            "wall_s": float(metrics.get("wall_s", math.nan)),
            "reused": bool(metrics.get("reused", 0)),  # result read back on resume, not re-run
            # epoch seconds at the trial function's entry and at its result (the slot's time line)
            "started_at": float(metrics.get("started_at", math.nan)),
            "ended_at": float(metrics.get("ended_at", math.nan)),
        }
        for m in METRICS:
            value = metrics.get(m, math.nan) if status == "ok" else math.nan
            row[m] = float(value) if value is not None else math.nan
        history = json.loads(metrics.get("eval_history") or "{}")
        row["eval_epochs"] = [int(e) for e, _ in history.get("AP", [])]
        for m in METRICS:
            row[f"eval_{m}"] = [float(v) for _, v in history.get(m, [])]
        rows.append(row)
    rows.sort(key=lambda r: (r["setting"], r["source"], r["replicate"]))
    return rows


def _trial_id(result) -> str | None:
    path = getattr(result, "path", None)
    return Path(path).name if path else None


def _scalar(v: Any) -> Any:
    return v if isinstance(v, (int, float, str, bool)) else json.dumps(v)


AP_UNIT_KEY = b"ap_unit"
AP_UNIT = b"points"


def write_results(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write ``rows`` as Parquet (atomically) and return the path."""
    path = Path(path)
    table = pa.Table.from_pylist(rows)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), AP_UNIT_KEY: AP_UNIT})
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a results table, metrics in AP points whatever version wrote it."""
    table = pq.read_table(path)
    rows = table.to_pylist()
    if (table.schema.metadata or {}).get(AP_UNIT_KEY) != AP_UNIT:  # fractions: older tables
        for row in rows:
            for m in METRICS:
                if row.get(m) is not None:
                    row[m] = 100.0 * row[m]
                if row.get(f"eval_{m}") is not None:
                    row[f"eval_{m}"] = [100.0 * v for v in row[f"eval_{m}"]]
    return rows

"""A sequential study's driver: seeds come in waves until each comparison with the baseline is
decided (``design: sequential``).

Wave k (from 1) runs replicates ``wave_replicates(spec, k)`` of the baseline and of every
setting whose comparison is still open, on Tune exactly as a fixed study runs its trials
(packing, one-worker trials in process, idempotent MLflow child runs). Then every finished
trial so far is analysed with the sequential analysis that ``sparse-rcnn analyze`` applies to a
table with a ``wave`` column (``stats.sequential_table`` through
``study_report.study_analysis``): each comparison is ``different``, ``equivalent``,
``undecided`` (final wave, or futility) or still ``open``. A decided comparison's setting runs no
more seeds; the baseline runs while any comparison is open. The study ends when none is open
or after the last wave (``seeds.max`` seeds per setting).

A decision, once made, stands: the analysis takes each comparison's first decisive look, and
later waves only add looks after it (the baseline's later seeds do not move an earlier stop).

Saved in the study folder, beside ``study.json``::

    waves.json        one entry per decided wave: settings run, each comparison's state
                      (verdict, difference, repeated interval, statistic and boundary), the
                      comparisons still open (what the next wave runs)
    waves.parquet     the results rows of the decided waves (a ``wave`` column)
    tune-w<k>/        wave k's Tune state

Resume (``study --resume``): the next wave follows from the last entry of ``waves.json``; its
Tune state is restored when there is one, and trials that finished are read back from MLflow,
never trained again. A wave interrupted after its trials finished but before its decision was
saved is decided again from the same results.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from ray import tune

from sparse_rcnn.platform.errors import InputError
from sparse_rcnn.platform.orchestration.results import read_results, results_table, write_results
from sparse_rcnn.platform.orchestration.study import (
    StudyOutcome,
    close_study,
    fit_grid,
    new_tuner,
    restore_tuner,
    stop_study,
    tune_state_saved,
    tune_trials,
)
from sparse_rcnn.platform.orchestration.study_progress import StudyProgress
from sparse_rcnn.platform.orchestration.study_record import TUNE_NAME, StudyError, StudyRecord
from sparse_rcnn.platform.orchestration.tune_state import verify
from sparse_rcnn.platform.output_files import atomic_write
from sparse_rcnn.platform.spec.study import Study, wave_replicates, wave_sizes
from sparse_rcnn.platform.tracking.studies import log_wave_decision

WAVES_FILE = "waves.json"
WAVE_ROWS_FILE = "waves.parquet"


def wave_tune_name(wave: int) -> str:
    return f"{TUNE_NAME}-w{wave}"


def load_waves(folder: Path) -> list[dict[str, Any]]:
    """The decided waves in ``waves.json`` (empty before the first decision); StudyError (one
    line) for a file that is not the driver's."""
    path = folder / WAVES_FILE
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StudyError(f"{path} is not valid JSON ({e}); the study cannot resume") from None
    ok = isinstance(data, list) and all(
        isinstance(w, dict)
        and isinstance(w.get("wave"), int)
        and isinstance(w.get("open"), list)
        and all(isinstance(x, str) for x in w["open"])
        for w in data
    )
    if not ok or [w["wave"] for w in data] != list(range(1, len(data) + 1)):
        raise StudyError(
            f"{path} is not a list of decided waves 1, 2, ...; the study cannot resume"
        )
    return data


def _save_waves(folder: Path, waves: list[dict[str, Any]]) -> None:
    text = json.dumps(waves, indent=1, allow_nan=False)
    atomic_write(folder / WAVES_FILE, lambda f: f.write(text.encode()))


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def decide_wave(
    rows: list[dict[str, Any]], study: Study, wave: int, ran: list[str], open_before: list[str]
) -> dict[str, Any]:
    """The decision after ``wave``: every comparison's sequential state on ``rows`` (all
    finished trials so far) and which comparisons stay open."""
    from sparse_rcnn.platform.orchestration.study_report import spec_analysis

    spec = study.spec
    analysis = spec_analysis(rows, spec)
    assert analysis.sequential is not None  # every row has a wave
    comparisons = []
    for c in analysis.sequential.comparisons:
        r = c.result
        last = r.looks[-1] if r.looks else None
        comparisons.append(
            {
                "a": c.a,
                "b": c.b,
                "verdict": r.verdict,
                "stopped_wave": r.stopped_wave,
                "diff": _finite(r.diff),
                "rci": [_finite(r.rci.low), _finite(r.rci.high)] if r.rci else None,
                "statistic": _finite(last.statistic) if last else None,
                "boundary": _finite(last.boundary) if last else None,
                "seeds_used": r.seeds_used,
            }
        )
    still = {c["a"] for c in comparisons if c["verdict"] == "open"}
    return {
        "wave": wave,
        "seeds_per_setting": wave_sizes(spec)[wave - 1],
        "settings": ran,
        "comparisons": comparisons,
        # Answered: different or equivalent (undecided at the last look is closed, not answered).
        "decided": [c["a"] for c in comparisons if c["verdict"] in ("different", "equivalent")],
        "open": [a for a in open_before if a in still],
        "ended": time.time(),
    }


def _wave_line(study_id: str, entry: dict[str, Any], waves: int, short: dict[str, str]) -> str:
    parts = []
    for c in entry["comparisons"]:
        name = f"{short.get(c['a'], c['a'])} vs {short.get(c['b'], c['b'])}"
        if c["diff"] is None:
            parts.append(f"{name}: {c['verdict']} (no look yet)")
            continue
        lo, hi = c["rci"] or (None, None)
        ci = f", repeated CI [{lo:+.2f}, {hi:+.2f}]" if lo is not None and hi is not None else ""
        where = f" at wave {c['stopped_wave']}" if c["stopped_wave"] else ""
        parts.append(f"{name}: {c['verdict']}{where} ({c['diff']:+.2f}{ci})")
    counts = _counts(len(entry["comparisons"]), len(entry["decided"]), len(entry["open"]))
    nxt = "no more waves" if not entry["open"] or entry["wave"] == waves else "next wave"
    return (
        f"[{study_id}] wave {entry['wave']}/{waves} ({entry['seeds_per_setting']} seeds per "
        f"setting): {counts}; " + "; ".join(parts) + f" -> {nxt}"
    )


def _counts(comparisons: int, decided: int, still_open: int) -> str:
    """``"1 decided, 1 undecided, 0 open"``: answered, closed without an answer, open."""
    undecided = comparisons - decided - still_open  # the last look, or futility
    return (
        f"{decided} decided, "
        + (f"{undecided} undecided, " if undecided else "")
        + f"{still_open} open"
    )


def _stage(
    wave: int,
    waves: int,
    comparisons: int,
    open_labels: list[str],
    done: list[dict[str, Any]],
    short: dict[str, str],
) -> str:
    """The progress line's wave part: the wave, decided/open counts, and each open
    comparison's current difference and repeated interval (from the last decision)."""
    decided = len(done[-1]["decided"]) if done else 0
    out = f"wave {wave}/{waves}: {_counts(comparisons, decided, len(open_labels))}"
    if done:
        now = []
        for c in done[-1]["comparisons"]:
            lo, hi = c.get("rci") or (None, None)
            if (
                c["a"] in open_labels
                and c["diff"] is not None
                and lo is not None
                and hi is not None
            ):
                now.append(f"{short.get(c['a'], c['a'])} {c['diff']:+.2f} [{lo:+.2f}, {hi:+.2f}]")
        if now:
            out += " (" + "; ".join(now) + ")"
    return out


def run_waves(
    record: StudyRecord, folder: Path, ctx: dict[str, Any], resuming: bool = False
) -> StudyOutcome:
    """Run (or resume) a sequential study wave by wave (see the module doc)."""
    study = record.study()
    spec = study.spec
    sizes = wave_sizes(spec)
    baseline = study.settings[0].label
    others = [s.label for s in study.settings[1:]]
    short = {s.label: s.short_label for s in study.settings}
    done = load_waves(folder)
    rows: list[dict[str, Any]] = []
    if done and (folder / WAVE_ROWS_FILE).is_file():
        decided = {w["wave"] for w in done}
        rows = [r for r in read_results(folder / WAVE_ROWS_FILE) if r.get("wave") in decided]
    open_labels = list(done[-1]["open"]) if done else others
    wave = len(done) + 1
    if not resuming:
        print(
            f"study {record.study_id}: sequential, {len(study.settings)} settings (baseline "
            f"{short[baseline]}), seeds per setting after each wave "
            f"{', '.join(map(str, sizes))}, {record.max_concurrent_trials} trials at a time; "
            f"folder {folder}",
            flush=True,
        )
    elif wave <= len(sizes) and open_labels:
        print(f"resuming study {record.study_id} at wave {wave}/{len(sizes)}", flush=True)
    wall = 0.0
    while open_labels and wave <= len(sizes):
        ran = [baseline, *open_labels]
        reps = set(wave_replicates(spec, wave))
        plans = [p for p in study.trials if p.setting_label in ran and p.replicate in reps]
        name = wave_tune_name(wave)
        if resuming and tune.Tuner.can_restore(str(folder / name)):
            verify(folder, record.study_id, name)  # a saved state not ours is refused
        if resuming and tune_state_saved(folder / name):
            tuner = restore_tuner(folder, record.study_id, name)
        else:
            stage = _stage(wave, len(sizes), len(others), open_labels, done, short)
            progress = StudyProgress(
                record.study_id, spec.metric, record.max_concurrent_trials, len(plans), stage
            )
            tuner = new_tuner(tune_trials(plans), ctx, record, folder, name, progress)
        resuming = False
        grid, seconds = fit_grid(tuner, record, folder, name)
        wall += seconds
        new = results_table(grid, record)
        for row in new:
            row["wave"] = wave
        if not all(r["status"] in ("ok", "failed") for r in new):
            return close_study(rows + new, record, folder, wall)  # the resume command
        rows = rows + new
        write_results(rows, folder / WAVE_ROWS_FILE)
        try:
            entry = decide_wave(rows, study, wave, ran, open_labels)
        except (ValueError, InputError) as e:
            stop_study(record, f"wave {wave} could not be analysed: {e}", status="FAILED")
            raise StudyError(
                f"study {record.study_id}: wave {wave} could not be analysed: {e}"
            ) from None
        done.append(entry)
        _save_waves(folder, done)
        print(_wave_line(record.study_id, entry, len(sizes), short), flush=True)
        log_wave_decision(record.tracking_uri, record.parent_run_id, entry, short)
        open_labels = entry["open"]
        wave += 1
    return close_study(rows, record, folder, wall)

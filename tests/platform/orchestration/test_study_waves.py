"""The sequential driver's decisions, on results rows with known truth (no Ray): a separated
pair stops at its first wave and stays decided, a close pair runs to the last wave; the saved
wave state refuses a file that is not the driver's."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from sparse_rcnn.platform.orchestration.study_record import StudyError
from sparse_rcnn.platform.orchestration.study_waves import (
    WAVES_FILE,
    _wave_line,
    decide_wave,
    load_waves,
)
from sparse_rcnn.platform.spec.study import StudySpec, build_study, wave_replicates


@pytest.fixture
def study(small_job):
    spec = StudySpec(
        name="seq",
        job="base.yaml",
        design="sequential",
        seeds={"initial": 3, "step": 2, "max": 7},
        vary={"optimizer.lr": [1e-3, 2e-3, 3e-3]},  # baseline, separated, close
    )
    return build_study(spec, small_job())


def _rows(study, wave, labels, rng):
    """Rows of ``wave`` for the settings ``labels``: the baseline around 20 AP with replicate
    noise shared by every setting (paired), the separated setting +5, the close one +N(0, 1)."""
    base, sep, close = (s.label for s in study.settings)
    shift = {base: 0.0, sep: 5.0, close: 0.0}
    noise = {close: 1.0}
    rows = []
    for p in study.trials:
        if p.setting_label not in labels or p.replicate not in wave_replicates(study.spec, wave):
            continue
        shared = np.random.default_rng(100 + p.replicate).normal(20.0, 2.0)
        own = rng.normal(0.0, noise.get(p.setting_label, 0.05))
        rows.append({
            "trial_key": p.key, "setting_label": p.setting_label, "source": p.source,
            "replicate": p.replicate, "seed": p.seed, "status": "ok", "wave": wave,
            "AP": shared + shift[p.setting_label] + own,
        })  # fmt: skip
    return rows


def test_a_separated_pair_stops_at_wave_one_and_a_close_pair_runs_to_the_end(study):
    rng = np.random.default_rng(0)
    base, sep, close = (s.label for s in study.settings)
    rows = _rows(study, 1, [base, sep, close], rng)
    first = decide_wave(rows, study, 1, [base, sep, close], [sep, close])
    verdicts = {c["a"]: c for c in first["comparisons"]}
    assert verdicts[sep]["verdict"] == "different" and verdicts[sep]["stopped_wave"] == 1
    assert verdicts[sep]["diff"] == pytest.approx(5.0, abs=0.3)
    lo, hi = verdicts[sep]["rci"]
    assert lo < 5.0 < hi and verdicts[sep]["statistic"] >= verdicts[sep]["boundary"]
    assert verdicts[close]["verdict"] == "open" and verdicts[close]["stopped_wave"] is None
    assert first["open"] == [close] and first["decided"] == [sep]
    assert first["seeds_per_setting"] == 3
    line = _wave_line("seq-1", first, 3, {s.label: s.short_label for s in study.settings})
    assert line.startswith("[seq-1] wave 1/3 (3 seeds per setting): 1 decided, 1 open; ")
    assert re.search(
        r"lr=0\.002 vs lr=0\.001: different at wave 1 \(\+[45]\.\d\d, repeated CI "
        r"\[\+4\.\d\d, \+5\.\d\d\]\); ",
        line,
    ), line
    assert "lr=0.003 vs lr=0.001: open (" in line and line.endswith("-> next wave")

    # Later waves run the baseline and the open setting only; the decided one stays decided.
    for wave in (2, 3):
        rows += _rows(study, wave, [base, close], rng)
        entry = decide_wave(rows, study, wave, [base, close], [close])
        verdicts = {c["a"]: c for c in entry["comparisons"]}
        assert verdicts[sep]["verdict"] == "different" and verdicts[sep]["stopped_wave"] == 1
        assert verdicts[sep]["seeds_used"] == 3
    assert entry["seeds_per_setting"] == 7
    # The last wave spends what is left: the close pair ends undecided or equivalent, not open.
    assert verdicts[close]["verdict"] in ("undecided", "equivalent")
    assert verdicts[close]["seeds_used"] == 7 and entry["open"] == []
    last_line = _wave_line("seq-1", entry, 3, {s.label: s.short_label for s in study.settings})
    if verdicts[close]["verdict"] == "undecided":  # closed, not answered
        assert entry["decided"] == [sep]
        assert "): 1 decided, 1 undecided, 0 open; " in last_line
    assert last_line.endswith("-> no more waves")


def test_failed_trials_are_left_out_of_the_decision(study):
    rng = np.random.default_rng(1)
    base, sep, close = (s.label for s in study.settings)
    rows = _rows(study, 1, [base, sep, close], rng)
    for r in rows:
        if r["setting_label"] == close:
            r["status"], r["AP"] = "failed", float("nan")
    entry = decide_wave(rows, study, 1, [base, sep, close], [sep, close])
    verdicts = {c["a"]: c for c in entry["comparisons"]}
    assert verdicts[close]["verdict"] == "open" and verdicts[close]["diff"] is None
    assert verdicts[sep]["verdict"] == "different"
    json.dumps(entry, allow_nan=False)  # what waves.json holds


@pytest.mark.parametrize(
    "content",
    ["not json", "{}", '[{"wave": 2, "open": []}]', '[{"wave": 1, "open": [3]}]'],
)
def test_a_waves_file_that_is_not_the_drivers_is_one_line(tmp_path, content):
    (tmp_path / WAVES_FILE).write_text(content)
    with pytest.raises(StudyError) as info:
        load_waves(tmp_path)
    assert "\n" not in str(info.value) and "cannot resume" in str(info.value)
    assert str(tmp_path / WAVES_FILE) in str(info.value)


def test_no_waves_file_is_no_decided_wave(tmp_path):
    assert load_waves(tmp_path) == []


def test_the_progress_stage_shows_the_wave_the_counts_and_each_open_interval(study):
    from sparse_rcnn.platform.orchestration.study_waves import _stage

    rng = np.random.default_rng(0)
    base, sep, close = (s.label for s in study.settings)
    short = {s.label: s.short_label for s in study.settings}
    assert _stage(1, 3, 2, [sep, close], [], short) == "wave 1/3: 0 decided, 2 open"
    rows = _rows(study, 1, [base, sep, close], rng)
    entry = decide_wave(rows, study, 1, [base, sep, close], [sep, close])
    close_now = next(c for c in entry["comparisons"] if c["a"] == close)
    lo, hi = close_now["rci"]
    assert _stage(2, 3, 2, [close], [entry], short) == (
        f"wave 2/3: 1 decided, 1 open (lr=0.003 {close_now['diff']:+.2f} [{lo:+.2f}, {hi:+.2f}])"
    )

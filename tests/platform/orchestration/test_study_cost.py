"""What a study's answers cost: trial wall time x reserved resources, per decided comparison,
and the estimate to decide the rest (no Ray: the numbers are checked by hand)."""

from __future__ import annotations

import math

import pytest

from sparse_rcnn.dashboards.report_text import cost_conclusion, cost_markdown
from sparse_rcnn.platform.orchestration.study_cost import study_cost
from sparse_rcnn.platform.spec.study import StudySpec, build_study


def _study(small_job, **job):
    spec = StudySpec(name="c", job="base.yaml", seeds=3, vary={"optimizer.lr": [1e-3, 2e-3]})
    return build_study(spec, small_job(**job))


def _rows(study, wall_s):
    return [{"trial_key": p.key, "wall_s": wall_s} for p in study.trials]


def test_a_fixed_study_costs_its_trials_and_estimates_the_seeds_for_80_percent_power(small_job):
    study = _study(small_job)  # one worker in process: 1 CPU per trial
    rows = _rows(study, 1800.0)
    rows.append({"trial_key": "unknown", "wall_s": 1e9})  # not a trial of the study: ignored
    rows[0]["wall_s"] = math.nan  # no result: not counted
    a, b = (s.label for s in reversed(study.settings))
    report = {
        "pairing": "paired",
        "power": {"seeds_paired_80": 10, "seeds_per_arm_80": 40},
        "settings": [{"setting": b, "n": 3}, {"setting": a, "n": 3}],
        "comparisons": [{"a": a, "b": b, "verdict": "undecided"}],
    }
    cost = study_cost(rows, study, report)
    assert cost["trials"] == 5 and cost["cpu_hours"] == pytest.approx(2.5)
    assert cost["gpu_hours"] == 0 and cost["cpu_hours_per_trial"] == pytest.approx(0.5)
    assert cost["decided"] == 0 and cost["cpu_hours_per_decided"] is None
    (u,) = cost["undecided"]
    assert (u["seeds_used"], u["seeds_more"]) == (3, 7)
    assert u["cpu_hours"] == pytest.approx(2 * 7 * 0.5) and u["gpu_hours"] == 0
    text = cost_conclusion(cost)
    assert text.startswith("Compute: 2.5 CPU-hours over 5 trials; none of 1 comparisons decided")
    assert "7 more seeds per setting, about 7 CPU-hours" in text
    md = "\n".join(cost_markdown(cost))
    assert "| total (5 trials) | 2.5 | 0 |" in md and "| 3 | 7 | 7 | 0 |" in md


def test_a_sequential_study_costs_gpu_hours_per_decided_comparison(small_job):
    study = _study(small_job, **{"scaling.num_workers": 2, "scaling.use_gpu": True})
    rows = _rows(study, 3600.0)  # 6 trials, each 2 GPU workers for an hour
    a, b = (s.label for s in reversed(study.settings))
    report = {
        "pairing": "paired",
        "sequential": {
            "max_seeds": 7,
            "comparisons": [
                {"a": a, "b": b, "verdict": "different", "seeds_used": 3},
                {"a": "other", "b": b, "verdict": "open", "seeds_used": 5},
            ],
        },
        "comparisons": [{"a": a, "b": b, "verdict": "undecided"}],  # the fixed one: ignored
    }
    cost = study_cost(rows, study, report)
    assert cost["gpu_hours"] == pytest.approx(12.0) and cost["cpu_hours"] > 0
    assert (cost["decided"], cost["comparisons"]) == (1, 2)
    assert cost["gpu_hours_per_decided"] == pytest.approx(12.0)
    (u,) = cost["undecided"]
    assert u["seeds_more"] == 2 and u["gpu_hours"] == pytest.approx(2 * 2 * 2.0)
    assert u["basis"] == "seeds.max of the design"
    assert cost_conclusion(cost).startswith("Compute: 12 GPU-hours over 6 trials (")
    assert "1 of 2 comparisons decided, 12 GPU-hours per decided comparison" in cost_conclusion(
        cost
    )

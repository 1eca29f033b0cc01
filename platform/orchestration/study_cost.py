"""What a study's answers cost: each trial's wall time x the resources it reserved, as CPU-hours
and GPU-hours, in total, per decided comparison, and the estimate of deciding each comparison
still undecided at the current sigma.

A trial reserves what ``packing.trial_resources`` says (its Tune actor and, on Ray Train, its
workers) for its training wall time (``wall_s`` of its result: a trial read back on resume
counts the time it took when it ran). Time between trials (actor start, scheduling) is not
counted: it is the cluster's, not the answer's (``bench/study_packing.py`` measures it).

A comparison is decided when its verdict is ``different`` or ``equivalent`` (a sequential
study's: the sequential verdict). Per decided comparison = the study's total / the number
decided (the baseline's trials serve every comparison, so the cost is shared, not split).

For a comparison not decided, the seeds per setting it would take:

- sequential study: up to its ``seeds.max`` (the design decides by then); the estimate is
  ``max - used`` more seeds for the setting and the baseline;
- fixed study: the seeds for 80 % power at the effect of interest with sigma as estimated
  (paired: ``seeds_paired_80``, else ``seeds_per_arm_80``), minus those run.

Cost of more seeds = seeds x 2 settings (the setting and the baseline) x the mean cost of one
of the study's trials.
"""

from __future__ import annotations

import math
from typing import Any

from sparse_rcnn.platform.orchestration.packing import trial_job, trial_resources
from sparse_rcnn.platform.spec.study import Study

DECIDED = ("different", "equivalent")


def _hours(seconds: float, amount: float) -> float:
    return seconds * amount / 3600.0


def _per(total: float, n: int) -> float | None:
    return total / n if n else None


def study_cost(rows: list[dict[str, Any]], study: Study, report: dict[str, Any]) -> dict[str, Any]:
    """The ``cost`` section of report.json (see the module doc)."""
    plans = {p.key: p for p in study.trials}
    cpu = gpu = 0.0
    counted = 0
    for row in rows:
        wall = float(row.get("wall_s") or math.nan)
        plan = plans.get(row["trial_key"])
        if plan is None or not math.isfinite(wall):
            continue
        need = trial_resources(trial_job(plan.job))
        cpu += _hours(wall, need.get("CPU", 0.0))
        gpu += _hours(wall, need.get("GPU", 0.0))
        counted += 1
    sequential = report.get("sequential")
    comparisons = (sequential or {}).get("comparisons") or report.get("comparisons") or []
    decided = [c for c in comparisons if c.get("verdict") in DECIDED]
    trial_cpu, trial_gpu = _per(cpu, counted), _per(gpu, counted)
    power = report.get("power") or {}
    paired = report.get("pairing") == "paired"
    target = power.get("seeds_paired_80" if paired else "seeds_per_arm_80")
    undecided = []
    n_by_setting = {s["setting"]: s.get("n") or 0 for s in report.get("settings", [])}
    for c in comparisons:
        if c.get("verdict") in DECIDED:
            continue
        if sequential:
            used = int(c.get("seeds_used") or 0)
            more, basis = max(int(sequential["max_seeds"]) - used, 0), "seeds.max of the design"
        else:
            used = min(n_by_setting.get(c["a"], 0), n_by_setting.get(c["b"], 0))
            more = max(int(target) - used, 0) if target else None
            basis = "80% power at the effect of interest, sigma as estimated"
        undecided.append(
            {
                "a": c["a"],
                "b": c["b"],
                "verdict": c.get("verdict"),
                "seeds_used": used,
                "seeds_more": more,
                "basis": basis,
                "cpu_hours": None if more is None or trial_cpu is None else 2 * more * trial_cpu,
                "gpu_hours": None if more is None or trial_gpu is None else 2 * more * trial_gpu,
            }
        )
    return {
        "cpu_hours": cpu,
        "gpu_hours": gpu,
        "trials": counted,
        "cpu_hours_per_trial": trial_cpu,
        "gpu_hours_per_trial": trial_gpu,
        "comparisons": len(comparisons),
        "decided": len(decided),
        "cpu_hours_per_decided": _per(cpu, len(decided)),
        "gpu_hours_per_decided": _per(gpu, len(decided)),
        "undecided": undecided,
    }

"""The study's terminal progress: one line per trial event (a Tune callback in the driver)."""

from __future__ import annotations

import math
import time
from typing import Any

from ray import tune


class StudyProgress(tune.Callback):
    """One terminal line whenever a trial starts, evaluates or ends: trials done / running /
    pending, the best and worst final AP so far, elapsed time and an ETA. ``stage``: where a
    sequential study stands (its wave, decided and open comparisons), printed after the id."""

    def __init__(self, study_id: str, metric: str, concurrency: int, total: int, stage: str = ""):
        self.study_id, self.metric, self.stage = study_id, metric, stage
        self.concurrency, self.total = concurrency, total
        self._start: float | None = None
        self._finals: dict[str, float] = {}
        self._walls: list[float] = []
        self._started: dict[str, float] = {}

    def __getstate__(self) -> dict[str, Any]:  # restored studies start a fresh clock
        return {
            "study_id": self.study_id,
            "metric": self.metric,
            "concurrency": self.concurrency,
            "total": self.total,
            "stage": self.stage,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._started[trial.trial_id] = time.monotonic()
        self._print(trials, f"started {trial.config['trial']['key']}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        key = trial.config["trial"]["key"]
        if result.get("final"):
            value = result.get(self.metric, math.nan)
            self._finals[key] = value
            if not result.get("reused"):
                self._walls.append(float(result.get("wall_s", 0.0)))
            status = result.get("status", "?")
            what = f"{value:.2f}" if status == "ok" else status
            self._print(trials, f"{key} finished: {self.metric} {what}")
        elif "eval_epoch" in result:
            self._print(
                trials,
                f"{key} epoch {int(result['eval_epoch'])}: "
                f"{self.metric} {result.get(self.metric, math.nan):.2f}",
            )

    def on_trial_error(self, iteration, trials, trial, **info):
        self._print(trials, f"{trial.config['trial']['key']} errored")

    def _print(self, trials, event: str) -> None:
        now = time.monotonic()
        self._start = self._start or now
        # Tune creates trials lazily (max_concurrent_trials): not-yet-created ones are pending.
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        running = [t for t in trials if t.status == "RUNNING"]
        total = max(self.total, len(trials))
        pending = total - done - len(running)
        finite = [v for v in self._finals.values() if math.isfinite(v)]
        span = f" | {self.metric} best {max(finite):.2f} worst {min(finite):.2f}" if finite else ""
        eta = ""
        if self._walls:
            avg = sum(self._walls) / len(self._walls)
            left = pending * avg + sum(
                max(avg - (now - self._started.get(t.trial_id, now)), 0.0) for t in running
            )
            eta = f", ETA {_clock(left / max(self.concurrency, 1))}"
        stage = f" {self.stage} |" if self.stage else ""
        print(
            f"[{self.study_id}]{stage} {done}/{total} done, {len(running)} running, "
            f"{pending} pending{span} | {_clock(now - self._start)} elapsed{eta} | {event}",
            flush=True,
        )


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"

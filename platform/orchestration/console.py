"""What the user sees while Ray runs: the platform's progress lines, warnings and errors.

Ray forwards every worker's stdout/stderr to the driver (``log_to_driver``), which carries the
platform's own per-epoch line from rank 0 but also Ray's internal chatter. Measured on Ray 2.60,
per run of ``sparse-rcnn train``:

- ``Reporting training result N: TrainingReport(...)``, once per report, at INFO from a Train
  logger named after its file path, which Train's ``LoggingConfig(log_level=...)`` does not
  cover (its level filter only matches loggers named ``ray.train*``);
- ``core_worker.cc: Actor with class name: 'PreemptionWatcher' ... has constructor arguments in
  the object store``, an ERROR line from the TrainController's C++ core worker, once per fit.

:func:`quiet_console` drops those lines from the driver's stdout/stderr (they stay in Ray's log
folder, ``/tmp/ray/session_latest/logs``); ``--verbose`` keeps them. The multiple-instances
traceback of Train's ``PlacementGroupCleaner`` is not filtered: it is prevented, by giving every
worker the explicit address of the cluster the platform started (see ``cluster.connect``).
"""

from __future__ import annotations

import io
import logging
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

# Set by ``--verbose`` of train/study; forwarded to workers like every SPARSE_RCNN_* variable.
VERBOSE_ENV = "SPARSE_RCNN_VERBOSE"

# Lines of Ray's own output that the default console drops (matched anywhere in the line, so
# the ``(RayTrainWorker pid=...)`` prefix does not matter).
RAY_NOISE = (
    re.compile(r"Reporting training result \d+: TrainingReport\("),
    re.compile(r"Actor with class name: 'PreemptionWatcher'.*constructor arguments"),
    # Train's PlacementGroupCleaner while Ctrl-C takes the dashboard down with the run.
    re.compile(r"Failed to query Ray Train Controller actor state"),
    # Tune's start-of-run box and pointers (its new output engine ignores RunConfig(verbose=0));
    # the study prints its own progress line per event.
    re.compile(r"^[╭│├╰]"),
    re.compile(r"^View detailed results here: "),
    re.compile(r"^To visualize your results with TensorBoard"),
    # The raylet's warning when trial drivers (0.01 CPU each, by design) and Train workers
    # together start more worker processes than CPUs.
    re.compile(r"PYTHON worker processes have been started on node"),
    # MLflow's INFO records ("Creating initial MLflow database tables...") when its own logging
    # configuration, applied at import, outlives the level set below.
    re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d INFO mlflow\."),
)
# Loggers of libraries the driver uses whose INFO lines are not progress (MLflow's
# "Creating initial MLflow database tables..." on a new embedded store).
QUIET_LOGGERS = ("mlflow",)


class LineFilter(io.TextIOBase):
    """A text stream that passes whole lines to ``target`` unless one of ``patterns`` matches.
    Thread-safe: Ray's log thread and the main thread write concurrently."""

    def __init__(self, target: TextIO, patterns: tuple[re.Pattern[str], ...] = RAY_NOISE):
        self.target, self.patterns = target, patterns
        self._partial = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            *lines, self._partial = (self._partial + text).split("\n")
            kept = [ln for ln in lines if not any(p.search(ln) for p in self.patterns)]
            if kept:
                self.target.write("\n".join(kept) + "\n")
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self.target.flush()

    def close_partial(self) -> None:
        """Write out a last line without a newline (at the end of the run)."""
        with self._lock:
            if self._partial and not any(p.search(self._partial) for p in self.patterns):
                self.target.write(self._partial)
            self._partial = ""
            self.target.flush()

    def isatty(self) -> bool:
        return self.target.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", "utf-8")


@contextmanager
def quiet_console(verbose: bool = False) -> Iterator[None]:
    """Within the block, drop :data:`RAY_NOISE` lines from ``sys.stdout`` and ``sys.stderr`` and
    INFO records of :data:`QUIET_LOGGERS` (nothing changes with ``verbose``)."""
    if verbose:
        yield
        return
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = LineFilter(out), LineFilter(err)
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, LineFilter):
                stream.close_partial()
        sys.stdout, sys.stderr = out, err


def shut_down_ray() -> None:
    """Disconnect from Ray while the console is still filtered: the driver's log thread delivers
    the workers' last lines (Train's report lines among them) at shutdown, which would otherwise
    reach the terminal unfiltered from Ray's exit handler."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()

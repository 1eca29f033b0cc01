"""MLflow runs whose Ray job has ended but which still say RUNNING.

A submitted job's driver marks its run KILLED or FAILED on its way out. When the driver cannot
(SIGKILLed after ``jobs stop`` while Ray Train waits for a lost node, the head's job supervisor
killed with it, an OOM kill), the run would stay RUNNING forever. Every run a job creates
carries the job's submission id (tag ``ray_job_id``); ``sparse-rcnn jobs list`` and
``jobs stop --wait`` close the RUNNING runs of jobs that have ended, so the UI never shows a
dead run as live. A run is only closed once Ray reports its job SUCCEEDED, FAILED or STOPPED:
a live job's runs are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparse_rcnn.platform.tracking import names
from sparse_rcnn.platform.tracking.runs import client, finish_run

# The run status for a job that ended with its run still RUNNING: a stopped job's run was
# killed; a job that failed or even "succeeded" without closing its run did not finish it.
RUN_STATUS = {"STOPPED": "KILLED", "FAILED": "FAILED", "SUCCEEDED": "FAILED"}


@dataclass(frozen=True)
class ClosedRun:
    run_id: str
    run_name: str
    submission_id: str
    status: str  # what the run was marked


def close_runs_of_ended_jobs(uri: str, ended: dict[str, str]) -> list[ClosedRun]:
    """Mark every RUNNING run of an ended job KILLED (job STOPPED) or FAILED (job FAILED, or
    SUCCEEDED without closing it), the reason as the run's error. ``ended``: submission id ->
    the job's terminal status (SUCCEEDED, FAILED or STOPPED; other entries are ignored).
    One search of the RUNNING runs of the tracking store, whatever the number of jobs."""
    ended = {k: v for k, v in ended.items() if v in RUN_STATUS}
    if not ended:
        return []
    c = client(uri)
    experiments = [e.experiment_id for e in c.search_experiments()]
    if not experiments:
        return []
    running = c.search_runs(
        experiments, filter_string="attributes.status = 'RUNNING'", max_results=5000
    )
    closed = []
    for run in running:
        sid = run.data.tags.get(names.TAG_RAY_JOB_ID)
        if sid not in ended:
            continue
        status = RUN_STATUS[ended[sid]]
        why = (
            f"Ray job {sid} ended {ended[sid]} while this run was still RUNNING (its driver "
            "could not close it); closed by sparse-rcnn jobs"
        )
        finish_run(uri, run.info.run_id, status, why)
        closed.append(ClosedRun(run.info.run_id, run.info.run_name, sid, status))
    return closed

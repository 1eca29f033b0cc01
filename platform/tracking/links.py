"""Deep links into the MLflow UI (MLflow 3), checked in a real browser by the UI tests.

A bare experiment URL lands in MLflow 3's GenAI view with no runs shown; every link here asks
for the model-training view (``workflowType=machine_learning``)."""

from __future__ import annotations

from urllib.parse import quote

from sparse_rcnn.platform.tracking import names

VIEW = "workflowType=machine_learning"


def experiment_runs(base: str, experiment_id: str, search: str | None = None) -> str:
    """The experiment's runs table, optionally filtered by an MLflow search expression."""
    url = f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{VIEW}"
    return url + (f"&searchFilter={quote(search, safe='')}" if search else "")


def study_runs(base: str, experiment_id: str, study_id: str) -> str:
    """The study's parent run with its trials nested under it, and nothing else."""
    return experiment_runs(base, experiment_id, f"tags.`{names.TAG_STUDY_ID}` = '{study_id}'")


def run_page(base: str, experiment_id: str, run_id: str) -> str:
    """A run's Overview page (its description, params, metrics)."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def artifact(base: str, experiment_id: str, run_id: str, path: str) -> str:
    """One artifact of a run, opened in the UI's artifact viewer."""
    return f"{run_page(base, experiment_id, run_id)}/artifacts/{path}"


def experiment_ids(uri: str, names_: list[str] | None = None) -> dict[str, str]:
    """Experiment name -> id in the store at ``uri``, newest first (all but MLflow's empty
    ``Default`` unless asked for by name); only ``names_`` when given (absent ones left out)."""
    import logging

    from mlflow import MlflowClient

    # Opening a new store logs "Creating initial MLflow database tables..." at INFO: not ours.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    c = MlflowClient(uri)
    if names_ is not None:
        found = {n: c.get_experiment_by_name(n) for n in names_}
        return {n: e.experiment_id for n, e in found.items() if e is not None}
    return {
        e.name: e.experiment_id
        for e in c.search_experiments(order_by=["last_update_time DESC"])
        if e.name != "Default"
    }

"""Ray Jobs: submit a job spec to a running cluster, and list, follow and stop submitted jobs.

Every ``ray.job_submission`` touchpoint of the platform is in this module. A submission is:

- the resolved spec, written as ``spec.yaml`` into a fresh folder that becomes the job's
  ``working_dir`` (the entrypoint is ``python -m sparse_rcnn.platform.cli.main train spec.yaml``);
- this project's code: a wheel built from the source tree (``pip wheel --no-deps``), unpacked,
  and its ``sparse_rcnn`` folder shipped as a ``py_modules`` directory, so the driver and every
  Train worker import exactly this version. The wheel file itself is not shipped: Ray installs a
  ``.whl`` entry with ``pip install WHEEL --target DIR`` (2.60, ``install_wheel_package``), which
  implies ``--ignore-installed`` and would reinstall torch, Ray and MLflow into the job's folder;
- ``env_vars``: ``MLFLOW_TRACKING_URI`` and the stop policy (SIGINT, which Ray Train turns into
  a graceful abort of the run, instead of SIGTERM, which kills the driver mid-step).

Before anything is uploaded the dashboard's REST API (``GET /api/v0/nodes``) says what the
cluster has, and :func:`~sparse_rcnn.platform.orchestration.cluster.check_resources` refuses a
spec it cannot place. Token auth (Ray >= 2.52): a cluster that answers 401/403 gets the token
from ``$RAY_AUTH_TOKEN``, ``$RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``; a cluster without
auth never sees it. The token goes only to the configured address (redirects are not followed),
and over plain http only to a loopback address unless ``insecure_token`` says otherwise.

Secrets (see :mod:`sparse_rcnn.platform.redact`) reach the job through ``env_vars`` only:
credentials of the tracking URI travel as ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``; the shipped
``spec.yaml``, the job's metadata and every message carry the URI without them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import requests
from ray.job_submission import JobDetails, JobStatus, JobSubmissionClient, JobType

from sparse_rcnn.platform.errors import PlatformError
from sparse_rcnn.platform.names import check_name
from sparse_rcnn.platform.orchestration.cluster import check_resources
from sparse_rcnn.platform.orchestration.package import (
    source_commit,
)
from sparse_rcnn.platform.redact import redact, redact_uri, split_credentials
from sparse_rcnn.platform.spec.job import JobSpec
from sparse_rcnn.platform.spec.load import dump_spec
from sparse_rcnn.platform.state_dir import ENV as STATE_ENV
from sparse_rcnn.platform.state_dir import state_dir
from sparse_rcnn.platform.tracking.store import embedded_uri, is_local_store

SPEC_FILE = "spec.yaml"
ENTRYPOINT = f"python -m sparse_rcnn.platform.cli.main train {SPEC_FILE}"
TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
# Defaults of the job's environment; ``submit(env_vars=...)`` overrides them.
JOB_ENV_DEFAULTS = {
    # The job supervisor reads these from the job's env. On SIGINT Train V2 aborts its
    # controller and raises SystemExit in the driver; 30 s for that before SIGKILL.
    "RAY_JOB_STOP_SIGNAL": "SIGINT",
    "RAY_JOB_STOP_WAIT_TIME_S": "30",
    # run_job's ray.init passes env_vars of its own; without this Ray refuses to merge them
    # with the job's (same keys) and the driver fails at connect.
    "RAY_OVERRIDE_JOB_RUNTIME_ENV": "1",
}
# The commit the shipped copy was built from (the copy is no git checkout, so the driver's
# `git rev-parse` finds nothing). TODO(issue 4): tracking.runs.git_commit falls back to it.
GIT_COMMIT_ENV = "SPARSE_RCNN_GIT_COMMIT"


class SubmitError(PlatformError, RuntimeError):
    """The cluster, its auth, the tracking URI or the package is not usable; says what to do."""


class JobNotFound(SubmitError):
    """No job with this submission id on the cluster."""


# ---- the cluster's dashboard ---------------------------------------------------------------


def auth_token() -> tuple[str, str] | None:
    """``(token, where it came from)`` as Ray looks it up, or None."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip(), "$RAY_AUTH_TOKEN"
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip(), str(path)
    return None


def dashboard_address(address: str | None) -> str:
    """``http(s)://HOST:PORT`` of the dashboard: ``address``, else ``$RAY_API_SERVER_ADDRESS``,
    else ``$RAY_ADDRESS`` when it is an http address. ``HOST:PORT`` gets ``http://``."""
    env = os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS", "")
    address = address or (env if env.startswith(("http://", "https://")) else None)
    if not address:
        raise SubmitError(
            "no cluster address: pass --address http://HEAD:8265 (the Ray dashboard) or set "
            "RAY_API_SERVER_ADDRESS"
        )
    if address.startswith("ray://") or address == "auto":
        raise SubmitError(
            f"{address} is not a dashboard address; Ray Jobs talks to the dashboard, "
            "e.g. http://HEAD:8265"
        )
    if "://" not in address:
        address = f"http://{address}"
    return address.rstrip("/")


@dataclass(frozen=True)
class Dashboard:
    """A reachable Ray dashboard and the headers its requests need."""

    address: str
    headers: dict[str, str]
    ray_version: str

    def get(self, path: str) -> requests.Response:
        try:
            return requests.get(self.address + path, headers=self.headers, timeout=30,
                                allow_redirects=False)  # fmt: skip
        except requests.RequestException as e:
            message = self.redact(f"lost the Ray dashboard at {self.address}: {e}")
            raise SubmitError(message) from None

    def redact(self, text: str) -> str:
        """``text`` without the auth token or URI credentials."""
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        return redact(text, [token])

    @cached_property
    def client(self) -> JobSubmissionClient:
        return JobSubmissionClient(self.address, headers=dict(self.headers))

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """The SDK's RuntimeError/ConnectionError as :class:`SubmitError` naming ``what``."""
        try:
            yield
        except (RuntimeError, OSError) as e:
            raise SubmitError(self.redact(f"{what} at {self.address} failed: {e}")) from None


def open_dashboard(address: str | None, insecure_token: bool = False) -> Dashboard:
    """Check that ``address`` is a Ray dashboard; attach the auth token only if it asks, and
    over plain http only to a loopback address (or with ``insecure_token``)."""
    address = dashboard_address(address)

    def version(headers: dict[str, str]) -> requests.Response:
        try:
            return requests.get(f"{address}/api/version", headers=headers, timeout=15,
                                allow_redirects=False)  # fmt: skip
        except requests.RequestException as e:
            raise SubmitError(
                f"cannot reach the Ray dashboard at {address} ({type(e).__name__}); is the "
                "head node up and its dashboard port (8265 by default) reachable from here?"
            ) from None

    headers: dict[str, str] = {}
    r = version(headers)
    if r.status_code in (401, 403):
        found = auth_token()
        if found is None:
            raise SubmitError(
                f"the Ray cluster at {address} requires token authentication and no token "
                "was found: set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH to the head node's "
                "token (`ray get-auth-token` on the head)"
            )
        if urlparse(address).scheme == "http" and not _is_loopback(address) and not insecure_token:
            raise SubmitError(
                f"the Ray cluster at {address} asks for the auth token, which plain http would "
                "send readable to anyone on the path: use https:// or pass --insecure-token"
            )
        headers = {"Authorization": f"Bearer {found[0]}"}
        r = version(headers)
        if r.status_code in (401, 403):
            raise SubmitError(
                f"the Ray cluster at {address} rejected the auth token from {found[1]}; "
                "use the head node's token (`ray get-auth-token` on the head)"
            )
    if r.status_code != 200 or "ray_version" not in _json(r):
        raise SubmitError(
            f"{address} does not answer like a Ray dashboard "
            f"(GET /api/version: HTTP {r.status_code})"
        )
    return Dashboard(address, headers, _json(r)["ray_version"])


def _json(r: requests.Response) -> dict[str, Any]:
    try:
        data = r.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def cluster_nodes(dash: Dashboard) -> list[dict[str, Any]]:
    """The alive nodes in the shape of ``ray.nodes()`` that ``check_resources`` reads:
    ``[{"NodeID": ..., "Alive": True, "Resources": {"CPU": 2.0, ...}}]``."""
    r = dash.get("/api/v0/nodes?limit=10000")
    body = _json(r)
    if r.status_code != 200 or not body.get("result"):
        raise SubmitError(
            f"the Ray dashboard at {dash.address} did not list its nodes "
            f"(HTTP {r.status_code}: {body.get('msg') or r.text[:200]})"
        )
    nodes = body["data"]["result"]["result"]
    return [
        {"NodeID": n["node_id"], "Alive": True, "Resources": dict(n.get("resources_total") or {})}
        for n in nodes
        if n.get("state") == "ALIVE"
    ]


def preflight(dash: Dashboard, spec: JobSpec) -> list[dict[str, Any]]:
    """Raise ``ResourceError`` / :class:`SubmitError` now for a spec the cluster cannot run,
    instead of a job that waits forever for workers. Returns the alive nodes."""
    nodes = cluster_nodes(dash)
    check_resources(spec.scaling, nodes)
    if len(nodes) > 1 and spec.storage_path is None:
        raise SubmitError(
            f"the cluster has {len(nodes)} nodes and storage_path is not set: checkpoints would "
            "go to the driver's local disk, which workers on other nodes cannot reach; set "
            "storage_path to shared storage (s3://..., gs://..., an NFS path)"
        )
    return nodes


# ---- tracking ------------------------------------------------------------------------------


def tracking_for_cluster(
    spec: JobSpec, dash_address: str, override: str | None = None, allow_local: bool = False
) -> tuple[str, dict[str, str]]:
    """The tracking URI a submitted job logs to, and env vars it needs. Explicit only
    (``override``, the spec, ``$MLFLOW_TRACKING_URI``): the cluster cannot see this machine's
    embedded store, unless ``allow_local`` says the cluster runs on this machine."""
    uri = override or spec.mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri and allow_local:
        # The job writes into this machine's state dir (store and artifacts).
        return embedded_uri(), {STATE_ENV: str(state_dir())}
    if not uri:
        raise SubmitError(
            "a submitted job needs an MLflow tracking server the cluster can reach: set "
            "mlflow.tracking_uri in the spec, --tracking-uri, or MLFLOW_TRACKING_URI "
            "(--allow-local-tracking uses this machine's store, for a cluster on this machine)"
        )
    if allow_local:
        return uri, {}
    if is_local_store(uri):
        raise SubmitError(
            f"tracking URI {redact_uri(uri)} is a store in this machine's files, which cluster "
            "nodes cannot see; use an MLflow server (http://...) or --allow-local-tracking for a "
            "cluster on this machine"
        )
    if _is_loopback(uri) and not _is_loopback(dash_address):
        raise SubmitError(
            f"tracking URI {redact_uri(uri)} is this machine's loopback, which the cluster at "
            f"{dash_address} cannot reach; use an address the cluster nodes can reach"
        )
    return uri, {}


def _is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---- submission ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    submission_id: str
    address: str
    tracking_uri: str


def new_submission_id(spec: JobSpec) -> str:
    """``<spec name>-<8 hex>``: readable in ``jobs list``, unique per submission."""
    return f"{spec.name}-{uuid.uuid4().hex[:8]}"


def runtime_env(spec_dir: Path, package: Path | None, env_vars: dict[str, str]) -> dict[str, Any]:
    """The job's runtime_env: the spec folder as ``working_dir``, the package as py_modules."""
    env: dict[str, Any] = {"working_dir": str(spec_dir), "env_vars": env_vars}
    if package is not None:
        env["py_modules"] = [str(package)]
    return env


def submit(
    spec: JobSpec,
    dash: Dashboard,
    tracking_uri: str,
    package: Path | None,
    env_vars: dict[str, str] | None = None,
    submission_id: str | None = None,
) -> Submission:
    """Submit ``spec`` (already pre-flighted) to run ``sparse-rcnn train`` on the cluster.
    Credentials in ``tracking_uri`` go into the job's env vars only; the shipped spec, the
    metadata and the returned :class:`Submission` have the URI without them."""
    tracking_uri, credentials = _ship_tracking_uri(tracking_uri)
    shipped_uri = None if credentials.get("MLFLOW_TRACKING_URI") else tracking_uri
    spec = spec.model_copy(
        update={"mlflow": spec.mlflow.model_copy(update={"tracking_uri": shipped_uri})}
    )
    env = {**JOB_ENV_DEFAULTS, "MLFLOW_TRACKING_URI": tracking_uri, **credentials,
           **(env_vars or {})}  # fmt: skip
    submission_id = check_name("submission id", submission_id or new_submission_id(spec))
    metadata = {"spec_name": spec.name, "experiment": spec.mlflow.experiment,
                "tracking_uri": redact_uri(tracking_uri)}  # fmt: skip
    if package is not None and (commit := source_commit()) is not None:
        # The shipped copy is no git checkout; this names the source it was built from.
        metadata["git_commit"] = env.setdefault(GIT_COMMIT_ENV, commit)
    with tempfile.TemporaryDirectory(prefix="sparse-rcnn-job-") as spec_dir:
        (Path(spec_dir) / SPEC_FILE).write_text(dump_spec(spec))
        with dash.errors("submitting the job"):
            dash.client.submit_job(
                entrypoint=ENTRYPOINT,
                submission_id=submission_id,
                runtime_env=runtime_env(Path(spec_dir), package, env),
                metadata=metadata,
            )
    return Submission(submission_id, dash.address, redact_uri(tracking_uri))


def _ship_tracking_uri(uri: str) -> tuple[str, dict[str, str]]:
    """``(URI for the spec and metadata, env vars with its secrets)``. An http(s) URI loses its
    ``user:password@`` to ``MLFLOW_TRACKING_*``; any other URI with credentials (a database)
    travels whole in ``MLFLOW_TRACKING_URI`` and the spec names none (the job reads the env)."""
    if uri.startswith(("http://", "https://")):
        return split_credentials(uri)
    if redact_uri(uri) != uri:
        return redact_uri(uri), {"MLFLOW_TRACKING_URI": uri}
    return uri, {}


# ---- submitted jobs ------------------------------------------------------------------------


def job_info(dash: Dashboard, submission_id: str) -> JobDetails:
    """The job's details; :class:`~sparse_rcnn.platform.names.InvalidName` for an id that
    breaks the name rule (before any request), :class:`JobNotFound` for an unknown id. Every
    other call on a job goes through here first, so the SDK never sees an unchecked id."""
    check_name("submission id", submission_id)
    if dash.get(f"/api/jobs/{quote(submission_id, safe='')}").status_code == 404:
        raise JobNotFound(
            f"no job {submission_id!r} on the cluster at {dash.address}; "
            "`sparse-rcnn jobs list` shows the submission ids"
        )
    with dash.errors(f"reading job {submission_id}"):
        return dash.client.get_job_info(submission_id)


def list_jobs(dash: Dashboard) -> list[JobDetails]:
    """Submitted jobs (not interactive drivers), oldest first."""
    with dash.errors("listing jobs"):
        jobs = [j for j in dash.client.list_jobs() if j.type == JobType.SUBMISSION]
    return sorted(jobs, key=lambda j: j.start_time or 0)


def job_logs(dash: Dashboard, submission_id: str) -> str:
    job_info(dash, submission_id)
    with dash.errors(f"reading the logs of job {submission_id}"):
        return dash.client.get_job_logs(submission_id)


def stop_job(dash: Dashboard, submission_id: str) -> bool:
    """Ask the job to stop; False when it had already ended."""
    job_info(dash, submission_id)
    with dash.errors(f"stopping job {submission_id}"):
        return dash.client.stop_job(submission_id)


def follow(
    dash: Dashboard, submission_id: str, write: Callable[[str], Any], poll_s: float = 1.0
) -> JobDetails:
    """Stream the job's logs through ``write`` until it ends; returns its final details.
    If the log stream breaks, falls back to polling the status."""
    job_info(dash, submission_id)

    async def tail() -> None:
        async for chunk in dash.client.tail_job_logs(submission_id):
            write(chunk)

    try:
        asyncio.run(tail())
    except (RuntimeError, OSError) as e:  # e.g. a proxy that drops the websocket
        write(f"[log stream ended: {e}; waiting for the job to end]\n")
    return wait(dash, submission_id, poll_s=poll_s)


def wait(
    dash: Dashboard, submission_id: str, timeout_s: float | None = None, poll_s: float = 1.0
) -> JobDetails:
    """Poll until the job is SUCCEEDED, FAILED or STOPPED (TimeoutError after ``timeout_s``)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        info = job_info(dash, submission_id)
        if info.status in TERMINAL:
            return info
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {submission_id} still {info.status.value} after {timeout_s} s")
        time.sleep(poll_s)

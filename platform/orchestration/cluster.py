"""Connecting to Ray, what every Ray worker of a job gets in its environment, and checking that
a job's resources exist before asking for them."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from typing import Any

import ray

from sparse_rcnn.platform.errors import PlatformError
from sparse_rcnn.platform.orchestration.console import VERBOSE_ENV
from sparse_rcnn.platform.orchestration.loopback import LOOPBACK, prefer_loopback
from sparse_rcnn.platform.spec.job import ScalingSpec
from sparse_rcnn.platform.state_dir import ENV as STATE_ENV
from sparse_rcnn.platform.state_dir import state_dir

PLATFORM_ENV_PREFIX = "SPARSE_RCNN_"

# Shorter controller polling: a report otherwise waits up to 2 s (measured on 2.60).
_RAY_ENV_DEFAULTS = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    # Workers' print() stays plain stdout (the patch also defeats contextlib.redirect_stdout).
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
}


_GCS_PORT_ENV = "RAY_GCS_SERVER_PORT"


class ResourceError(PlatformError, RuntimeError):
    """The job asks for more than the cluster has; it would otherwise wait forever."""


def connect(
    address: str | None = None, env_vars: dict[str, str] | None = None, verbose: bool | None = None
) -> None:
    """``ray.init`` once: a new local Ray when ``address`` is None and no ``RAY_ADDRESS`` is set,
    else the given cluster. ``env_vars`` reach every worker through the runtime env.

    The local Ray is bound to 127.0.0.1 (node IP, dashboard, its agent, metrics servers; see
    README "Which sockets the local Ray opens") with Ray's token auth as Ray sets it up, and
    every worker gets ``RAY_ADDRESS`` of exactly this cluster: Ray code that looks the cluster
    up (Train's ``PlacementGroupCleaner``) then never trips over a second Ray on the host.
    ``verbose`` (default: ``$SPARSE_RCNN_VERBOSE`` is 1, set by ``--verbose``) keeps Ray's INFO
    logs in the driver; otherwise Ray's driver logger shows errors only."""
    for k, v in _RAY_ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)
    if ray.is_initialized():
        return
    if verbose is None:
        verbose = os.environ.get(VERBOSE_ENV) == "1"
    env = dict(env_vars or {})
    local: dict[str, Any] = {}
    user_gcs_port = os.environ.get(_GCS_PORT_ENV)
    if address is None and not os.environ.get("RAY_ADDRESS"):
        prefer_loopback(address)
        gcs_port = int(os.environ.get(_GCS_PORT_ENV) or _free_port())
        os.environ[_GCS_PORT_ENV] = str(gcs_port)  # read by the head ray.init starts
        env.setdefault("RAY_ADDRESS", f"{LOOPBACK}:{gcs_port}")
        local = {"_node_ip_address": LOOPBACK, "dashboard_host": LOOPBACK,
                 "include_dashboard": True}  # fmt: skip
    try:
        ray.init(
            address=address,
            runtime_env={"env_vars": env},
            log_to_driver=True,
            logging_level="INFO" if verbose else "ERROR",
            **local,
        )
    finally:
        if local and not user_gcs_port:
            os.environ.pop(_GCS_PORT_ENV, None)
    if local and not _is_loopback(ray.util.get_node_ip_address()):
        print(
            f"warning: the local Ray listens on {ray.util.get_node_ip_address()}, not "
            f"{LOOPBACK}: `ray` was imported before RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 was set",
            file=sys.stderr,
        )


# Settings of the collective libraries that a user sets on the driver for the workers:
# NCCL_DEBUG, NCCL_SOCKET_IFNAME, NCCL_IB_DISABLE, TORCH_NCCL_ASYNC_ERROR_HANDLING, ...
# (Ray Train V2 forwards only its own RAY_TRAIN_*).
_COLLECTIVE_PREFIXES = ("NCCL_", "TORCH_NCCL_", "GLOO_")
_COLLECTIVE_NAMES = ("TORCH_DISTRIBUTED_DEBUG", "TORCH_CPP_LOG_LEVEL", "CUDA_LAUNCH_BLOCKING")


def forwarded_env(tracking_uri: str | None = None) -> dict[str, str]:
    """The environment a job's Ray workers need on any node: this process's own ``SPARSE_RCNN_*``
    variables, those of NCCL, gloo and torch.distributed, the state directory (absolute, so a
    worker's working directory does not matter), MLflow's switch against printing run URLs and,
    when given, ``MLFLOW_TRACKING_URI``. Holds no credentials: it may be saved with Tune's
    state."""
    env = {
        k: v for k, v in os.environ.items()
        if k.startswith((PLATFORM_ENV_PREFIX, *_COLLECTIVE_PREFIXES)) or k in _COLLECTIVE_NAMES
    }  # fmt: skip
    env[STATE_ENV] = str(state_dir())
    # MLflow prints "View run ... at URL" when a run ends; the console shows our lines only.
    env["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    if tracking_uri is not None:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def worker_bundle(scaling: ScalingSpec) -> dict[str, float]:
    """What one Train worker reserves (Ray's defaults: 1 CPU, plus 1 GPU with ``use_gpu``)."""
    bundle = dict(scaling.resources_per_worker) or {"CPU": 1.0}
    if scaling.use_gpu:
        bundle.setdefault("GPU", 1.0)
    return bundle


def job_resources(scaling: ScalingSpec) -> dict[str, float]:
    """What all of a job's workers reserve together: :func:`worker_bundle` x ``num_workers``."""
    return {k: v * scaling.num_workers for k, v in worker_bundle(scaling).items()}


def check_resources(scaling: ScalingSpec, nodes: list[dict[str, Any]] | None = None) -> None:
    """Raise :class:`ResourceError` naming what is missing when ``scaling`` cannot be placed:
    a resource the cluster lacks in total, or a worker bundle no single node can hold."""
    nodes = nodes if nodes is not None else alive_nodes()
    bundle = worker_bundle(scaling)
    totals = cluster_totals(nodes)
    need = job_resources(scaling)
    short = {k: (v, totals.get(k, 0.0)) for k, v in need.items() if v > totals.get(k, 0.0) + 1e-9}
    if short:
        detail = ", ".join(f"{k}: needs {a:g}, cluster has {b:g}" for k, (a, b) in short.items())
        raise ResourceError(
            f"scaling asks for {scaling.num_workers} workers x {bundle}, more than the cluster "
            f"has ({detail}); lower scaling.num_workers or resources_per_worker"
        )
    fits = any(all(n.get("Resources", {}).get(k, 0.0) >= v for k, v in bundle.items())
               for n in nodes)  # fmt: skip
    if not fits:
        raise ResourceError(f"no single node can hold one worker's resources {bundle}")


def alive_nodes() -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]


def cluster_totals(nodes: list[dict[str, Any]]) -> dict[str, float]:
    """Each resource summed over ``nodes`` (from :func:`alive_nodes`)."""
    totals: dict[str, float] = {}
    for n in nodes:
        for k, v in n.get("Resources", {}).items():
            totals[k] = totals.get(k, 0.0) + float(v)
    return totals

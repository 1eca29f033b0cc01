"""Connecting to Ray and checking that a job's resources exist before asking for them."""

from __future__ import annotations

import os
from typing import Any

import ray

from sparse_rcnn.platform.errors import PlatformError
from sparse_rcnn.platform.spec.job import ScalingSpec

# Shorter controller polling: a report otherwise waits up to 2 s (measured on 2.60).
_RAY_ENV_DEFAULTS = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    # Workers' print() stays plain stdout (the patch also defeats contextlib.redirect_stdout).
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
}


class ResourceError(PlatformError, RuntimeError):
    """The job asks for more than the cluster has; it would otherwise wait forever."""


def connect(address: str | None = None, env_vars: dict[str, str] | None = None) -> None:
    """``ray.init`` once: a new local Ray when ``address`` is None and no ``RAY_ADDRESS`` is set,
    else the given cluster. ``env_vars`` reach every worker through the runtime env."""
    for k, v in _RAY_ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)
    if ray.is_initialized():
        return
    ray.init(
        address=address,
        runtime_env={"env_vars": dict(env_vars or {})},
        log_to_driver=True,
        logging_level="WARNING",
    )


def worker_bundle(scaling: ScalingSpec) -> dict[str, float]:
    """What one Train worker reserves (Ray's defaults: 1 CPU, plus 1 GPU with ``use_gpu``)."""
    bundle = dict(scaling.resources_per_worker) or {"CPU": 1.0}
    if scaling.use_gpu:
        bundle.setdefault("GPU", 1.0)
    return bundle


def check_resources(scaling: ScalingSpec, nodes: list[dict[str, Any]] | None = None) -> None:
    """Raise :class:`ResourceError` naming what is missing when ``scaling`` cannot be placed:
    a resource the cluster lacks in total, or a worker bundle no single node can hold."""
    nodes = nodes if nodes is not None else alive_nodes()
    bundle = worker_bundle(scaling)
    totals = cluster_totals(nodes)
    need = {k: v * scaling.num_workers for k, v in bundle.items()}
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


def alive_node_count() -> int:
    return sum(1 for n in ray.nodes() if n.get("Alive"))

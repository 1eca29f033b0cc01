"""Checks that need no Ray: run before ``ray.init`` so that a missing file or an impossible
resource request is one line within seconds, not after a minute of Ray start-up.

- :func:`check_job_files`: every local file or folder a job spec names exists and has the
  right kind (annotation JSONs and weights are files, image folders are directories). Paths
  with a scheme (``s3://...``) are left to the workers that read them.
- :func:`check_local_resources`: when the platform is about to start a local Ray (no
  ``--address``, no ``RAY_ADDRESS``, Ray not yet initialised), the CPUs and GPUs this machine
  has must hold the workers. On a cluster the same check runs after connecting
  (:func:`~sparse_rcnn.platform.orchestration.cluster.check_resources`).

This module does not import ``ray`` (``check_local_resources`` does, when called): the CLI checks
files before it sets the environment Ray reads at import (see ``orchestration/loopback.py``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from sparse_rcnn.platform.spec.job import JobSpec, ScalingSpec
from sparse_rcnn.platform.spec.load import SpecError

# The resources this module can count without Ray; a bundle naming others is checked on connect.
_LOCAL_KINDS = ("CPU", "GPU")


def job_files(spec: JobSpec) -> dict[str, tuple[str, bool]]:
    """``field path -> (path, is_dir)`` for the local files and folders ``spec`` reads."""
    wanted: dict[str, tuple[str | None, bool]] = {
        "model.backbone_weights": (spec.model.backbone_weights, False),
        "model.init_checkpoint": (spec.model.init_checkpoint, False),
    }
    d = spec.dataset
    if d.kind == "coco":
        wanted.update(
            {
                "dataset.train_ann": (d.train_ann, False),
                "dataset.train_images": (d.train_images, True),
                "dataset.val_ann": (d.val_ann, False),
                "dataset.val_images": (d.val_images, True),
            }
        )
    return {k: (p, is_dir) for k, (p, is_dir) in wanted.items() if p and "://" not in p}


def check_job_files(spec: JobSpec, source: str = "job spec") -> None:
    """Raise :class:`SpecError` naming the first field whose file or folder is missing."""
    for field, (value, is_dir) in job_files(spec).items():
        path = Path(value).expanduser()
        if not path.exists():
            kind = "folder" if is_dir else "file"
            raise SpecError(f"{source}: {field}: {kind} not found: {value}")
        if is_dir and not path.is_dir():
            raise SpecError(
                f"{source}: {field}: expected a folder of images, found a file: {value}"
            )
        if not is_dir and path.is_dir():
            raise SpecError(f"{source}: {field}: expected a file, found a folder: {value}")


def starts_local_ray(address: str | None) -> bool:
    """Whether connecting now would start a new local Ray (what ``cluster.connect`` does)."""
    ray = sys.modules.get("ray")  # not imported: certainly not initialised
    initialised = ray is not None and ray.is_initialized()
    return not (address or os.environ.get("RAY_ADDRESS") or initialised)


def local_resources() -> dict[str, float]:
    """The CPUs and GPUs a local Ray would find: ``os.cpu_count()`` (an upper bound: Ray may
    count fewer under a cgroup quota, which the check after connecting catches) and the CUDA
    devices torch sees (``CUDA_VISIBLE_DEVICES`` applies)."""
    import torch

    return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}


def check_local_resources(scalings: Iterable[ScalingSpec], address: str | None = None) -> None:
    """Raise :class:`ResourceError` when a local Ray about to start cannot hold the workers of
    one of ``scalings``. Does nothing when Ray would connect to an existing cluster or when
    ``RAY_OVERRIDE_RESOURCES`` changes what the local Ray advertises."""
    if not starts_local_ray(address) or os.environ.get("RAY_OVERRIDE_RESOURCES"):
        return
    from sparse_rcnn.platform.orchestration.cluster import ResourceError, check_resources

    node = {"Alive": True, "Resources": local_resources()}
    for scaling in scalings:
        res = scaling.resources_per_worker
        local = {k: v for k, v in res.items() if k in _LOCAL_KINDS}
        if res and not local:
            continue  # only resources this module cannot count
        try:
            check_resources(scaling.model_copy(update={"resources_per_worker": local}), [node])
        except ResourceError as e:
            raise ResourceError(f"on this machine (local Ray): {e}") from None


def preflight(
    specs: Iterable[JobSpec], address: str | None = None, source: str = "job spec"
) -> None:
    """``SPARSE_RCNN_TRACKING_OUTAGE_S``, files, then local resources, of every job in
    ``specs``; distinct scalings once. (A dry run checks files only: it may prepare a spec for
    another machine.)"""
    from sparse_rcnn.platform.tracking.outbox import outage_limit

    outage_limit()  # the setting the training workers read
    specs = list(specs)
    for spec in specs:
        check_job_files(spec, source)
    scalings = {s.scaling.model_dump_json(): s.scaling for s in specs}
    check_local_resources(scalings.values(), address)

"""The Kubernetes manifests in ``platform/deploy`` hold the fields the platform relies on: one
image everywhere, built on the Ray version the platform is tested with; the environment the
code reads (state folder on the shared volume, the tracking server's in-cluster address); GPU
workers whose Ray resources match their pod limits; a RayJob whose entrypoint is a valid
``sparse-rcnn train`` of a spec the image holds; an MLflow server on PostgreSQL and S3."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
from pathlib import Path

import pytest
import yaml

from sparse_rcnn.platform.spec.load import load_job_spec

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "platform" / "deploy"
IMAGE = "REGISTRY/sparse-rcnn-platform:0.1.0"
IMAGE_HOME = "/home/ray/sparse-rcnn"  # WORKDIR of the Dockerfile


def docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def by_kind(name: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for d in docs(name):
        out.setdefault(d["kind"], []).append(d)
    return out


def containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def cluster_specs() -> list[tuple[str, dict]]:
    rc = by_kind("raycluster.yaml")["RayCluster"][0]["spec"]
    rj = by_kind("rayjob.yaml")["RayJob"][0]["spec"]["rayClusterSpec"]
    return [("RayCluster", rc), ("RayJob", rj)]


def test_every_manifest_parses_and_lives_in_one_namespace():
    files = sorted(DEPLOY.glob("*.yaml"))
    assert {f.name for f in files} >= {"raycluster.yaml", "rayjob.yaml", "mlflow.yaml",
                                       "namespace-and-storage.yaml"}  # fmt: skip
    for f in files:
        for d in docs(f.name):
            assert d["apiVersion"] and d["kind"] and d["metadata"]["name"], f.name
            if d["kind"] != "Namespace":
                assert d["metadata"]["namespace"] == "sparse-rcnn", (f.name, d["kind"])


def test_the_image_is_built_on_the_ray_version_the_platform_is_tested_with():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    base = re.search(r"^FROM rayproject/ray:(\S+)-py(\d+)-gpu$", dockerfile, re.M)
    assert base, "the Dockerfile must build on a rayproject/ray GPU image"
    assert base.group(1) == importlib.metadata.version("ray")
    assert base.group(2) == "311"
    assert re.search(rf"^WORKDIR {IMAGE_HOME}$", dockerfile, re.M)
    for folder in ("models", "platform", "dashboards", "jobs"):
        assert re.search(rf"^COPY .*\b{folder} {folder}$", dockerfile, re.M), folder
    for kind, spec in cluster_specs():
        assert spec["rayVersion"] == importlib.metadata.version("ray"), kind


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob"])
def test_ray_pods_share_image_state_folder_tracking_server_and_volume(kind):
    spec = dict(cluster_specs())[kind]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    mlflow = by_kind("mlflow.yaml")
    service = next(s for s in mlflow["Service"] if s["metadata"]["name"] == "mlflow")
    uri = f"http://mlflow.sparse-rcnn.svc:{service['spec']['ports'][0]['port']}"
    claim = by_kind("namespace-and-storage.yaml")["PersistentVolumeClaim"][0]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every node mounts it
    for group in groups:
        template = group["template"]
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        for c in containers(template):
            assert c["image"] == IMAGE
            e = env(c)
            assert e["MLFLOW_TRACKING_URI"] == uri
            mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
            assert e["SPARSE_RCNN_STATE_DIR"].startswith(mounts["shared"] + "/")
            claim_name = volumes["shared"]["persistentVolumeClaim"]["claimName"]
            assert claim_name == claim["metadata"]["name"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # no training on the head


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob"])
def test_gpu_workers_ray_resources_match_their_pod_limits(kind):
    spec = dict(cluster_specs())[kind]
    for group in spec["workerGroupSpecs"]:
        gpus = int(group["rayStartParams"]["num-gpus"])
        (c,) = containers(group["template"])
        limits, requests = c["resources"]["limits"], c["resources"]["requests"]
        assert int(limits["nvidia.com/gpu"]) == int(requests["nvidia.com/gpu"]) == gpus >= 1
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert "/dev/shm" in mounts  # NCCL's shared memory


def test_the_rayjob_entrypoint_is_a_valid_train_of_a_spec_the_image_holds():
    job = by_kind("rayjob.yaml")["RayJob"][0]["spec"]
    argv = shlex.split(job["entrypoint"])
    assert argv[:2] == ["sparse-rcnn", "train"]
    path = Path(argv[2])
    assert path.is_absolute() and path.is_relative_to(IMAGE_HOME)
    local = ROOT / path.relative_to(IMAGE_HOME)
    assert local.is_file(), f"{path} is not in the image (no {local})"
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    assert len(sets) * 2 == len(argv) - 3  # nothing but --set key=value after the spec
    spec = load_job_spec(local, sets)  # every key and value valid for the job spec
    assert spec.scaling.use_gpu
    workers = job["rayClusterSpec"]["workerGroupSpecs"]
    gpus = sum(g["replicas"] * int(g["rayStartParams"]["num-gpus"]) for g in workers)
    assert spec.scaling.num_workers <= gpus
    assert spec.storage_path and spec.storage_path.startswith("/shared/")
    for key in ("train_ann", "train_images", "val_ann", "val_images"):
        assert getattr(spec.dataset, key).startswith("/shared/"), key
    assert job["shutdownAfterJobFinishes"] is True


def test_the_mlflow_server_uses_postgres_and_s3_with_secrets_from_a_secret():
    kinds = by_kind("mlflow.yaml")
    (deploy,) = kinds["Deployment"]
    (c,) = containers(deploy["spec"]["template"])
    args = c["args"]
    assert c["command"] == ["mlflow", "server"]
    backend = args[args.index("--backend-store-uri") + 1]
    assert backend.startswith("postgresql://") and "$(POSTGRES_PASSWORD)" in backend
    pg = next(s for s in kinds["Service"] if s["metadata"]["name"] == "mlflow-postgres")
    assert f"@mlflow-postgres.sparse-rcnn.svc:{pg['spec']['ports'][0]['port']}/" in backend
    assert args[args.index("--artifacts-destination") + 1].startswith("s3://")
    port = int(args[args.index("--port") + 1])
    service = next(s for s in kinds["Service"] if s["metadata"]["name"] == "mlflow")
    assert service["spec"]["ports"][0]["targetPort"] == port == c["ports"][0]["containerPort"]
    assert service["spec"]["selector"] == deploy["spec"]["template"]["metadata"]["labels"]
    secrets = {e["name"] for e in c["env"] if "valueFrom" in e}
    assert secrets == {"POSTGRES_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert c["image"] == IMAGE

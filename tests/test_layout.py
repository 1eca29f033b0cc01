"""Guards of the repository layout (../shared/STYLE.md): one import root, no shadowing of the
standard library, model code free of distributed/tracking imports."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOTS = {"models": "sparse_rcnn.models", "platform": "sparse_rcnn.platform",
         "dashboards": "sparse_rcnn.dashboards"}  # fmt: skip
FORBIDDEN_NAMES = {"platform", "ray", "mlflow", "datasets", "distributed", "logging", "types",
                   "test", "torch", "uuid"}  # fmt: skip


def test_no_init_at_the_three_roots():
    for folder in ROOTS:
        assert (ROOT / folder).is_dir(), folder
        assert not (ROOT / folder / "__init__.py").exists(), f"{folder}/__init__.py must not exist"


def test_stdlib_platform_and_uuid_work_from_the_repo_root():
    code = "import platform, uuid; print(platform.__file__); print(platform.system())"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not out[0].startswith(str(ROOT)), out
    assert out[1] == "Linux"


def _package_dirs_on_disk() -> set[str]:
    found = set(ROOTS.values())
    for folder, pkg in ROOTS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            if "__pycache__" not in rel.parts:
                found.add(".".join([pkg, *rel.parts]))
    return found


def test_packages_list_matches_folders():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(cfg["packages"]) == _package_dirs_on_disk()
    assert cfg["package-dir"] == {pkg: folder for folder, pkg in ROOTS.items()}


def test_no_package_named_after_stdlib_or_dependency():
    for pkg in _package_dirs_on_disk():
        for part in pkg.split(".")[2:]:
            assert part not in FORBIDDEN_NAMES, pkg


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_models_import_no_distributed_tracking_or_platform_code():
    banned = ("ray", "mlflow", "torch.distributed", "sparse_rcnn.platform")
    for path in (ROOT / "models").rglob("*.py"):
        for name in _imports(path):
            assert not any(name == b or name.startswith(b + ".") for b in banned), (path, name)


def test_only_tracking_imports_mlflow():
    for path in (ROOT / "platform").rglob("*.py"):
        if "tracking" in path.relative_to(ROOT).parts:
            continue
        for name in _imports(path):
            assert not (name == "mlflow" or name.startswith("mlflow.")), (path, name)


def test_only_models_vision_imports_torchvision():
    """Everything else imports it through sparse_rcnn.models.vision, which keeps
    torch._dynamo out of every process start (see its docstring)."""
    for root in ("models", "platform", "dashboards"):
        for path in (ROOT / root).rglob("*.py"):
            if path == ROOT / "models" / "vision.py":
                continue
            for name in _imports(path):
                assert not (name == "torchvision" or name.startswith("torchvision.")), (path, name)

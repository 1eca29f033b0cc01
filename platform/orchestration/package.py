"""Shipping this project's code to a cluster: a wheel built from the source tree, unpacked.

Ray installs a ``.whl`` py_modules entry with ``pip install WHEEL --target DIR`` (2.60,
``install_wheel_package``), which implies ``--ignore-installed`` and would reinstall torch, Ray
and MLflow into the job's folder; the unpacked ``sparse_rcnn`` folder ships as a plain
directory instead, and Ray caches it by content.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sparse_rcnn.platform.errors import PlatformError

PROJECT = "sparse-rcnn-platform"


class PackagingError(PlatformError, RuntimeError):
    """This project's code cannot be found or built for shipping."""


def source_root() -> Path:
    """The source tree of this installation (editable install), else the working directory."""
    spec = importlib.util.find_spec("sparse_rcnn.platform")
    candidates = [Path(p).parent for p in (spec.submodule_search_locations or [])] if spec else []
    for root in [*candidates, Path.cwd()]:
        pyproject = root / "pyproject.toml"
        if pyproject.is_file():
            project = tomllib.loads(pyproject.read_text()).get("project", {})
            if project.get("name") == PROJECT:
                return root.resolve()
    raise PackagingError(
        f"no {PROJECT} source tree found (installed from a wheel?): run from the repository "
        "root, pass --wheel PATH, or --no-package when the cluster's image has the package"
    )


def source_commit() -> str | None:
    """``git rev-parse HEAD`` of the source tree, ``-dirty`` with uncommitted changes; None
    outside a git checkout."""
    try:
        root = source_root()
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10)  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10)  # fmt: skip
    except (PackagingError, OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def stage_source(root: Path, dest: Path) -> None:
    """Copy what the build reads: the top-level files and the folders that pyproject.toml's
    ``[tool.setuptools.package-dir]`` maps (not .venv, tests, datasets...)."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    folders = set(pyproject.get("tool", {}).get("setuptools", {}).get("package-dir", {}).values())
    if not folders or not all(f and f != "." for f in folders):
        raise PackagingError(
            f"{root / 'pyproject.toml'}: expected package-dir folders, got {folders}"
        )
    dest.mkdir(parents=True)
    for f in root.iterdir():
        if f.is_file():
            shutil.copy2(f, dest / f.name)
    for folder in sorted(folders):
        shutil.copytree(root / folder, dest / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip


def build_wheel(root: Path, out_dir: Path) -> Path:
    """``pip wheel --no-deps`` of a staged copy of ``root`` (the build writes no ``build/`` or
    ``*.egg-info`` into the source tree). Returns the wheel's path."""
    src = out_dir / "src"
    stage_source(root, src)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
           "--wheel-dir", str(out_dir), str(src)]  # fmt: skip
    if importlib.util.find_spec("setuptools") is not None:
        cmd.insert(5, "--no-build-isolation")  # this env's setuptools: no index needed
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(out_dir.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise PackagingError(f"building the wheel of {root} failed:\n{done.stderr.strip()}")
    return wheels[0]


def unpack_wheel(wheel: Path, out_dir: Path) -> Path:
    """The wheel's ``sparse_rcnn`` folder, unpacked under ``out_dir`` (a py_modules entry)."""
    with zipfile.ZipFile(wheel) as z:
        z.extractall(out_dir)
    package = out_dir / "sparse_rcnn"
    if not (package / "platform" / "cli" / "main.py").is_file():
        raise PackagingError(f"{wheel} is not a {PROJECT} wheel (no sparse_rcnn/platform/cli)")
    return package


@contextmanager
def staged_package(wheel: Path | None, ship: bool = True) -> Iterator[Path | None]:
    """The ``sparse_rcnn`` folder to ship (from ``wheel``, else built from the source tree),
    in a temporary folder that lives as long as the context; None when ``ship`` is False."""
    if not ship:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="sparse-rcnn-wheel-") as tmp:
        tmp = Path(tmp)
        whl = wheel if wheel is not None else build_wheel(source_root(), tmp / "wheel")
        yield unpack_wheel(whl, tmp / "site")

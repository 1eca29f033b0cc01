"""``dashboards`` reads results (evaluation, stats, tracking, spec): it never imports the engine,
orchestration (Ray) or the CLI, so pictures and pages can be made anywhere from what a study
saved."""

from __future__ import annotations

import ast
from pathlib import Path

import sparse_rcnn.dashboards as dashboards

FORBIDDEN = ("sparse_rcnn.platform.engine", "sparse_rcnn.platform.orchestration",
             "sparse_rcnn.platform.cli", "ray", "torch")  # fmt: skip


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_dashboards_never_import_the_engine_orchestration_or_the_cli():
    files = sorted(Path(next(iter(dashboards.__path__))).glob("*.py"))
    assert len(files) >= 8
    bad = {
        f"{f.name}: {m}"
        for f in files
        for m in imported_modules(f)
        if any(m == x or m.startswith(x + ".") for x in FORBIDDEN)
    }
    assert not bad, sorted(bad)

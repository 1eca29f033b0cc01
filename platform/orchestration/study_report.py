"""``sparse-rcnn report STUDY_ID``: the study's statistics written as report.md / report.json in
the study folder and logged to the parent MLflow run.

Test-set noise needs each trial's validation detections: they are downloaded from the trial's
MLflow run (logged at its last epoch) and evaluated against the validation ground truth with
the image bootstrap (``evaluation.bootstrap``): one bootstrap SE per trial, and one paired
bootstrap per comparison between the two settings' first seeds, on the same image replicates.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from sparse_rcnn.platform.evaluation.bootstrap import (
    bootstrap_prepared,
    paired_bootstrap_prepared,
)
from sparse_rcnn.platform.evaluation.coco_eval import metric_names, prepare
from sparse_rcnn.platform.evaluation.detections import load_detections
from sparse_rcnn.platform.orchestration.results import read_results
from sparse_rcnn.platform.orchestration.study import (
    RESULTS_FILE,
    StudyError,
    StudyRecord,
    study_folder,
)
from sparse_rcnn.platform.orchestration.train import dataset_paths
from sparse_rcnn.platform.spec.job import JobSpec
from sparse_rcnn.platform.stats.study_report import analyze, to_markdown
from sparse_rcnn.platform.tracking.runs import RunLogger
from sparse_rcnn.platform.tracking.studies import download_detections

REPORT_MD = "report.md"
REPORT_JSON = "report.json"


def _image_bootstrap(
    record: StudyRecord, rows: list[dict[str, Any]], replicates: int, metric: str
) -> tuple[dict[str, float], dict[str, tuple[float, float]], list[dict[str, Any]], list[str]]:
    """Per-trial bootstrap SE and percentile CI of ``metric``, paired differences between
    settings (fraction units), and notes on what could not be computed."""
    study = record.study()
    plans = {p.key: p for p in study.trials}
    notes: list[str] = []
    accs: dict[str, Any] = {}
    gts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for row in rows:
            if row["status"] != "ok" or not row.get("run_id"):
                continue
            spec = JobSpec.model_validate(plans[row["trial_key"]].job)
            val_ann = dataset_paths(spec).val_ann
            path = download_detections(
                record.tracking_uri, row["run_id"], Path(tmp) / row["trial_key"]
            )
            if path is None:
                notes.append(f"trial {row['trial_key']}: no validation detections logged")
                continue
            gt = gts.get(val_ann)
            gt, acc = prepare(
                gt if gt is not None else val_ann, load_detections(path), tuple(spec.eval_max_dets)
            )
            gts[val_ann] = gt
            accs[row["trial_key"]] = (acc, val_ann)
    index = metric_names().index(metric)
    test_se, test_ci = {}, {}
    for key, (acc, _) in accs.items():
        res = bootstrap_prepared(acc, replicates, seed=0)
        test_se[key] = float(res.std_error[index])
        test_ci[key] = (float(res.ci_low[index]), float(res.ci_high[index]))
    paired = []
    labels: list[str] = []
    for r in rows:
        if r["setting_label"] not in labels:
            labels.append(r["setting_label"])

    def first(label: str) -> str | None:
        mine = sorted(
            (
                r
                for r in rows
                if r["setting_label"] == label
                and r["trial_key"] in accs
                and r["source"] != "nondeterminism"
            ),
            key=lambda r: r["replicate"],
        )
        return mine[0]["trial_key"] if mine else None

    base = first(labels[0]) if labels else None
    for label in labels[1:]:
        other = first(label)
        if base is None or other is None or accs[base][1] != accs[other][1]:
            notes.append(f"no paired bootstrap for {label}: needs detections on the same images")
            continue
        res = paired_bootstrap_prepared(accs[other][0], accs[base][0], replicates, seed=0)
        lo, hi = float(res.ci_low[index]), float(res.ci_high[index])
        paired.append(
            {
                "a": label,
                "b": labels[0],
                "diff": float(res.diff[index]),
                "ci_low": lo,
                "ci_high": hi,
                "prob_positive": float(res.prob_positive[index]),
                "trials": [other, base],
            }
        )
    return test_se, test_ci, paired, notes


def write_report(
    study_id: str, replicates: int | None = None, log: bool = True
) -> tuple[dict[str, Any], Path]:
    """Compute the report of a finished study; returns ``(report, report.md path)``."""
    folder = study_folder(study_id)
    record = StudyRecord.load(folder)
    results = folder / RESULTS_FILE
    if not results.is_file():
        raise StudyError(
            f"study {study_id} has no {RESULTS_FILE} yet (unfinished); finish it with: "
            f"sparse-rcnn study --resume {study_id}"
        )
    rows = read_results(results)
    spec = record.study().spec
    replicates = spec.bootstrap_replicates if replicates is None else replicates
    test_se, test_ci, paired, notes = ({}, {}, [], [])
    if replicates > 0:
        test_se, test_ci, paired, notes = _image_bootstrap(record, rows, replicates, spec.metric)
    report = analyze(
        rows,
        metric=spec.metric,
        effect_size=spec.effect_size,
        alpha=spec.alpha,
        test_se=test_se,
        test_ci=test_ci,
        paired=paired,
        study_id=study_id,
    )
    report["warnings"] = sorted(set(report["warnings"]) | set(notes))
    report["bootstrap_replicates"] = replicates
    report["mlflow"] = {
        "tracking_uri": record.tracking_uri,
        "experiment": record.experiment,
        "parent_run_id": record.parent_run_id,
    }
    md = folder / REPORT_MD
    js = folder / REPORT_JSON
    _replace_text(js, json.dumps(report, indent=1, allow_nan=False))
    _replace_text(md, to_markdown(report))
    if log:
        logger = RunLogger(record.tracking_uri, record.parent_run_id)
        for path in (md, js):
            logger.log_artifact(path)
        _log_summary_metrics(record, report)
    return report, md


def _replace_text(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all, through a fresh temp file in its folder: a
    ``report.md`` that is a symlink is replaced, never followed out of the study folder."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        tmp.chmod(0o644)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _log_summary_metrics(record: StudyRecord, report: dict[str, Any]) -> None:
    """Headline numbers as parent-run metrics, so the MLflow UI can sort and chart studies."""
    metrics: dict[str, float] = {}
    p = report["power"]
    for key in ("sigma", "seeds_per_arm_80", "seeds_per_arm_90", "mde_80"):
        if p.get(key) is not None and math.isfinite(p[key]):
            metrics[f"study/{key}"] = float(p[key])
    for i, s in enumerate(report["settings"]):
        sm = s["summary"]
        for key in ("mean", "std"):
            if sm.get(key) is not None:
                metrics[f"study/setting{i}_{key}"] = float(sm[key])
    if metrics:
        RunLogger(record.tracking_uri, record.parent_run_id).log_metrics(metrics, step=0)

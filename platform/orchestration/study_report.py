"""``sparse-rcnn report STUDY_ID``: the study's statistics written as report.md / report.json in
the study folder and logged to the parent MLflow run.

The numbers come from ``stats.analysis.analyze`` on the study's results rows (the same code
path as ``sparse-rcnn analyze``), in AP points. Test-set noise needs each trial's validation
detections: they are downloaded from the trial's MLflow run (logged at its last epoch) and
evaluated with the image bootstrap on image draws SHARED by every trial (one seed, one ground
truth), so the analysis can pair them: the paired image-bootstrap variance of the seed-averaged
difference between settings, and the share of each setting's seed variance specific to this
validation set.

The same JSON also becomes ``report.html`` and ``figures/*.png`` (``dashboards.report_html``);
the parent run gets them as artifacts and the conclusions as its description (Overview page).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sparse_rcnn.dashboards.report_html import (
    StudyDashboard,
    conclusions_markdown,
    study_dashboard,
)
from sparse_rcnn.dashboards.report_text import (
    cost_conclusion,
    cost_markdown,
    report_json,
    to_markdown,
)
from sparse_rcnn.platform.evaluation.bootstrap import bootstrap_weights
from sparse_rcnn.platform.evaluation.coco_eval import POINTS, metric_names, prepare
from sparse_rcnn.platform.evaluation.detections import load_detections
from sparse_rcnn.platform.orchestration.results import read_results
from sparse_rcnn.platform.orchestration.study_cost import study_cost
from sparse_rcnn.platform.orchestration.study_record import (
    RESULTS_FILE,
    StudyError,
    StudyRecord,
    study_folder,
)
from sparse_rcnn.platform.orchestration.train import dataset_paths
from sparse_rcnn.platform.output_files import atomic_write
from sparse_rcnn.platform.spec.job import JobSpec
from sparse_rcnn.platform.spec.study import StudySpec
from sparse_rcnn.platform.stats.analysis import Analysis, analyze
from sparse_rcnn.platform.stats.table import Run
from sparse_rcnn.platform.tracking import names
from sparse_rcnn.platform.tracking.runs import RunLogger
from sparse_rcnn.platform.tracking.studies import download_detections, log_study_summary

REPORT_MD = "report.md"
REPORT_JSON = "report.json"
REPORT_HTML = names.ARTIFACT_REPORT_HTML
BOOTSTRAP_SEED = 0  # one seed for every trial: the replicates share their image draws


def _image_replicates(
    record: StudyRecord, rows: list[dict[str, Any]], replicates: int, metric: str
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per finished trial, its (B,) image-bootstrap replicates of ``metric`` in AP points, all
    on the same B image draws; and notes on what could not be computed."""
    study = record.study()
    plans = {p.key: p for p in study.trials}
    notes: list[str] = []
    out: dict[str, np.ndarray] = {}
    index = metric_names().index(metric)
    # One ground truth, one set of image draws for every trial: that is what pairs them.
    first_ann: str | None = None
    gt: Any = None
    weights: np.ndarray | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for row in rows:
            if row["status"] != "ok" or not row.get("run_id"):
                continue
            spec = JobSpec.model_validate(plans[row["trial_key"]].job)
            val_ann = dataset_paths(spec).val_ann
            first_ann = first_ann or val_ann
            if val_ann != first_ann:
                notes.append(f"trial {row['trial_key']}: other validation images; not paired")
                continue
            path = download_detections(
                record.tracking_uri, row["run_id"], Path(tmp) / row["trial_key"]
            )
            if path is None:
                notes.append(f"trial {row['trial_key']}: no validation detections logged")
                continue
            gt, acc = prepare(
                gt if gt is not None else val_ann, load_detections(path), tuple(spec.eval_max_dets)
            )
            if weights is None:
                weights = bootstrap_weights(acc.num_images, replicates, BOOTSTRAP_SEED)
            out[row["trial_key"]] = POINTS * acc.metrics(weights)[0][:, index]
    return out, notes


def study_runs(rows: list[dict[str, Any]], metric: str) -> list[Run]:
    """The study's results rows (AP points) as analysis runs (NaN: failed)."""
    runs = []
    for r in rows:
        v = r.get(metric)
        ok = r["status"] == "ok" and v is not None and math.isfinite(float(v))
        runs.append(
            Run(
                setting=r["setting_label"],
                seed=r.get("seed"),
                value=float(v) if ok else math.nan,
                source=r["source"],
                replicate=r.get("replicate"),
                key=r["trial_key"],
                wave=r.get("wave"),  # a sequential study's rows; None in a fixed study's
            )
        )
    return runs


def study_analysis(
    rows: list[dict[str, Any]],
    *,
    metric: str,
    effect_size: float,
    alpha: float,
    pairing: str,
    image_replicates: dict[str, np.ndarray] | None = None,
    max_seeds: int | None = None,
    spending: str = "obrien_fleming",
    futility: bool = False,
) -> Analysis:
    """``analyze`` of a study's rows (paired by replicate unless the study drew independent
    seeds per setting); settings with failed trials are reported, not refused. Rows with a
    ``wave`` (a sequential study) are also decided wave by wave: ``max_seeds``, ``spending``
    and ``futility`` are the study's design."""
    return analyze(
        study_runs(rows, metric),
        metric=metric,
        unit="AP points (COCO metric x 100)",
        alpha=alpha,
        effect_size=effect_size,
        paired=pairing == "replicate",
        image_replicates=image_replicates,
        name="study results",
        min_runs=0,
        run_word="trial",
        max_seeds=max_seeds,
        spending=spending,
        futility=futility,
    )


def spec_analysis(
    rows: list[dict[str, Any]],
    spec: StudySpec,
    image_replicates: dict[str, np.ndarray] | None = None,
) -> Analysis:
    """:func:`study_analysis` of ``rows`` as the study ``spec`` asks: its metric, effect size,
    alpha and pairing, and a sequential study's design (most seeds, spending, futility)."""
    design: dict[str, Any] = {}
    if spec.design == "sequential":
        design = {"max_seeds": spec.num_seeds, "spending": spec.spending,
                  "futility": spec.futility}  # fmt: skip
    return study_analysis(
        rows,
        metric=spec.metric,
        effect_size=spec.effect_size,
        alpha=spec.alpha,
        pairing=spec.pairing,
        image_replicates=image_replicates,
        **design,
    )


def write_report(
    study_id: str, replicates: int | None = None, log: bool = True
) -> tuple[dict[str, Any], Path]:
    """Compute the report of a finished study; returns ``(report, report.md path)``.
    ``report.html`` and ``figures/`` are written next to report.md."""
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
    reps, notes = ({}, [])
    if replicates > 0:
        reps, notes = _image_replicates(record, rows, replicates, spec.metric)
    analysis = spec_analysis(rows, spec, reps)
    report = report_json(analysis, rows, study_id)
    report["warnings"] = sorted(set(report["warnings"]) | set(notes))
    report["bootstrap_replicates"] = replicates
    report["cost"] = study_cost(rows, record.study(), report)
    report["conclusions"].append(cost_conclusion(report["cost"]))
    report["mlflow"] = {
        "tracking_uri": record.tracking_uri,
        "experiment": record.experiment,
        "parent_run_id": record.parent_run_id,
    }
    md = folder / REPORT_MD
    js = folder / REPORT_JSON
    # Replaced, never written through: a report.md planted as a symlink is not followed.
    text = json.dumps(report, indent=1, allow_nan=False)
    atomic_write(js, lambda f: f.write(text.encode()))
    markdown = to_markdown(analysis, title=f"Seed study {study_id}")
    markdown = markdown.rstrip("\n") + "\n\n" + "\n".join(cost_markdown(report["cost"]))
    atomic_write(md, lambda f: f.write(markdown.encode()))
    dash = study_dashboard(report, rows, f"Seed study {study_id}")
    page, pngs = _write_dashboard(folder, dash)
    if log:
        logger = RunLogger(record.tracking_uri, record.parent_run_id)
        for path in (md, js, page):
            logger.log_artifact(path)
        for path in pngs:
            logger.log_artifact(path, names.ARTIFACT_REPORT_FIGURES_DIR)
        logger.set_note(conclusions_markdown(report))
        short = {st.label: st.short_label for st in record.study().settings}
        log_study_summary(record.tracking_uri, record.parent_run_id, report, short)
    return report, md


def _write_dashboard(folder: Path, dash: StudyDashboard) -> tuple[Path, list[Path]]:
    """``report.html`` and ``figures/STEM.png`` in the study folder, each replaced atomically;
    a ``figures`` link is replaced by a folder, never written through."""
    page = folder / REPORT_HTML
    atomic_write(page, lambda f: f.write(dash.html.encode()))
    figures = folder / names.ARTIFACT_REPORT_FIGURES_DIR
    if figures.is_symlink():
        figures.unlink()
    figures.mkdir(exist_ok=True)
    pngs = []
    for stem, data in dash.pngs.items():
        path = figures / f"{stem}.png"
        atomic_write(path, lambda f, data=data: f.write(data))
        pngs.append(path)
    return page, pngs

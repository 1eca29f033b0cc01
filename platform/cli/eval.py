"""``sparse-rcnn eval``: COCO box metrics of a detection file, with bootstrap CIs.

    sparse-rcnn eval --gt instances_val2017.json --detections dets.parquet
    sparse-rcnn eval --gt ANN.json --detections A.parquet --bootstrap 1000 --json-out a.json
    sparse-rcnn eval --gt ANN.json --detections A.parquet --compare B.json   # paired, A - B

Detections are Parquet (image_id, category_id, score, x, y, w, h) or COCO results JSON, boxes
xywh in original-image pixels. Metrics equal pycocotools COCOeval(bbox); ``--max-dets mmdet``
uses mmdetection's maxDets (100, 300, 1000).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sparse_rcnn.platform.cli.main import UserError
from sparse_rcnn.platform.errors import InputError
from sparse_rcnn.platform.evaluation.detections import begin_load_detections, load_detections
from sparse_rcnn.platform.evaluation.forked import usable_cpus
from sparse_rcnn.platform.evaluation.max_dets import COCO_MAX_DETS, MMDET_MAX_DETS
from sparse_rcnn.platform.output_files import atomic_write, check_output_file

T = TypeVar("T")

HELP = "COCO box AP of detections, with bootstrap confidence intervals"
MAX_DETS = {"coco": COCO_MAX_DETS, "mmdet": MMDET_MAX_DETS}
DEFAULT_COMPARE_REPLICATES = 1000
# Processes for one evaluation: past a few, sending the parts back costs more than it saves.
MAX_WORKERS = 4
# What this process does while the detections are decoded, besides reading the ground truth:
# importing the rest of the evaluation (~30 ms), in bytes of results file decoded in that time
# (~4.4 ns per byte).
_OWN_WORK = 7 << 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", required=True, type=Path, help="COCO instances JSON")
    parser.add_argument(
        "--detections", required=True, type=Path, help="detections: .parquet or COCO results .json"
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=None,
        metavar="B",
        help="image-bootstrap replicates for percentile CIs (default: none; "
        f"{DEFAULT_COMPARE_REPLICATES} with --compare)",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--confidence", type=float, default=0.95, help="CI level (default 0.95)")
    parser.add_argument(
        "--max-dets",
        choices=sorted(MAX_DETS),
        default="coco",
        help="maxDets: coco = (1, 10, 100), mmdet = (100, 300, 1000)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="OTHER_DETS",
        help="second detection file: paired bootstrap of the difference (detections - other)",
    )
    parser.add_argument("--json-out", type=Path, metavar="FILE", help="write the results as JSON")


def run(args: argparse.Namespace) -> int:
    replicates = args.bootstrap
    if replicates is None and args.compare is not None:
        replicates = DEFAULT_COMPARE_REPLICATES
    if replicates is not None and replicates <= 0:
        raise UserError(f"--bootstrap must be a positive number of replicates, got {replicates}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    if not 0.0 < args.confidence < 1.0:
        raise UserError(f"--confidence must be in (0, 1), got {args.confidence}")
    if args.json_out is not None:  # before any work: a bad path must not cost the metrics
        check_output_file(args.json_out, "--json-out", create_parent=True)
    max_dets = MAX_DETS[args.max_dets]
    # This process has no threads of its own, so the evaluation may fork (evaluation/forked.py):
    # the detections file is decoded in parts while this process imports the rest of the
    # evaluation and reads the ground truth, and the categories are matched in parts. The
    # decoder (numpy, msgspec) is imported above, before the fork, so no child imports it.
    workers = min(usable_cpus(), MAX_WORKERS)
    with begin_load_detections(args.detections, workers, _OWN_WORK + _gt_work(args.gt)) as pending:
        from sparse_rcnn.dashboards.eval_tables import (
            bootstrap_dict,
            paired_dict,
            paired_table,
            result_dict,
            stats_table,
        )
        from sparse_rcnn.platform.evaluation.bootstrap import (
            bootstrap_prepared,
            paired_bootstrap_prepared,
        )
        from sparse_rcnn.platform.evaluation.coco_eval import evaluate, prepare, summarize
        from sparse_rcnn.platform.evaluation.ground_truth import load_ground_truth

        gt = load_ground_truth(args.gt)
        dets = pending.result()
    if replicates is None:  # the metrics alone: matched and accumulated in parts
        result = _naming(args.detections, lambda: evaluate(gt, dets, max_dets, workers))
    else:
        acc = _naming(args.detections, lambda: prepare(gt, dets, max_dets, workers)[1])
        result = summarize(acc)
    out: dict = {
        "ground_truth": str(args.gt),
        "detections": str(args.detections),
        **result_dict(result),
    }
    if args.compare is not None:
        dets_b = load_detections(args.compare, workers)
        acc_b = _naming(args.compare, lambda: prepare(gt, dets_b, max_dets, workers)[1])
        paired = paired_bootstrap_prepared(acc, acc_b, replicates, args.seed, args.confidence)
        print(paired_table(paired, args.detections.name, args.compare.name))
        out["compare"] = {"detections": str(args.compare), **paired_dict(paired)}
    elif replicates is not None:
        boot = bootstrap_prepared(acc, replicates, args.seed, args.confidence)
        print(stats_table(result, boot))
        out["bootstrap"] = bootstrap_dict(boot)
    else:
        print(stats_table(result))
    if result.num_detections_ignored:
        print(f"note: {result.num_detections_ignored} detections on categories not in --gt ignored")
    if args.json_out is not None:
        text = json.dumps(out, indent=1) + "\n"
        atomic_write(args.json_out, lambda f: f.write(text.encode()), "--json-out",
                     create_parent=True)  # fmt: skip
    return 0


def _naming(path: Path, work: Callable[[], T]) -> T:
    """``work()``; an error about the detections' content names their file."""
    try:
        return work()
    except InputError as e:
        raise InputError(f"{path}: {e}") from e


def _gt_work(path: Path) -> int:
    """Reading the ground truth file, in bytes of results file that take as long to decode:
    per byte, instances JSON (nested, ids and areas to check) took ~3x as long as results JSON
    on the bench case (13 vs 4.4 ns)."""
    try:
        return 3 * path.stat().st_size
    except OSError:
        return 0  # load_ground_truth reports it

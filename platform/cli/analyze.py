"""``sparse-rcnn analyze TABLE``: the study statistics for any table of results.

    sparse-rcnn analyze results.csv
    sparse-rcnn analyze runs.parquet --metric AP --scale 100 --baseline lr=0.002 \
        --json-out analysis.json --md-out analysis.md

One row per run: ``setting``, ``seed``, ``value`` (or ``--metric NAME``), optional ``source``
(all, init, data_order, augmentation, nondeterminism), optional ``replicate`` (rows with the
same replicate in different settings used the same seeds and are paired; ``--paired`` /
``--unpaired`` override) and optional ``wave`` (the wave of a sequential study that ran the
row: each comparison is then also decided wave by wave with error spending, ``--max-seeds``,
``--spending`` and ``--futility`` describing the design). Same code path as the study report;
no Ray, no MLflow.

    sparse-rcnn analyze waves.csv --max-seeds 20 --spending obrien_fleming
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

HELP = "statistics and verdicts for any results table (CSV or Parquet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", metavar="TABLE", type=Path, help="a .csv or .parquet file")
    parser.add_argument("--metric", default="value", help="the value column (default: value)")
    parser.add_argument("--alpha", type=float, default=0.05, help="test level (default 0.05)")
    parser.add_argument(
        "--effect-size",
        type=float,
        default=0.3,
        help="smallest difference of interest, in table units after --scale (default 0.3)",
    )
    parser.add_argument("--baseline", default=None, help="setting to compare against (first)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply values, e.g. 100 for COCO fractions"
    )
    pairing = parser.add_mutually_exclusive_group()
    pairing.add_argument("--paired", dest="paired", action="store_const", const=True)
    pairing.add_argument("--unpaired", dest="paired", action="store_const", const=False)
    parser.add_argument(
        "--max-seeds",
        type=int,
        default=None,
        help="wave column: the study's most seeds per setting (default: the most in the table)",
    )
    parser.add_argument(
        "--spending",
        choices=("obrien_fleming", "pocock"),
        default="obrien_fleming",
        help="wave column: alpha spending over the waves (default obrien_fleming)",
    )
    parser.add_argument(
        "--futility",
        action="store_true",
        help="wave column: the study also stopped comparisons for futility",
    )
    parser.add_argument("--json-out", type=Path, default=None, help="write the analysis JSON")
    parser.add_argument("--md-out", type=Path, default=None, help="write the Markdown report")


def _check_out(path: Path | None, flag: str) -> None:
    from sparse_rcnn.platform.cli.main import UserError

    if path is None:
        return
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a directory; give a file path")
    if not path.parent.is_dir():
        raise UserError(f"{flag} {path}: folder {path.parent} does not exist")


def run(args: argparse.Namespace) -> int:
    from sparse_rcnn.platform.cli.main import UserError

    if not 0 < args.alpha < 1:
        raise UserError(f"--alpha must be between 0 and 1, got {args.alpha}")
    if not (math.isfinite(args.effect_size) and args.effect_size > 0):
        raise UserError(f"--effect-size must be a positive number, got {args.effect_size}")
    _check_out(args.json_out, "--json-out")
    _check_out(args.md_out, "--md-out")

    from sparse_rcnn.dashboards.report_text import analysis_json, conclusions, to_markdown
    from sparse_rcnn.platform.stats.analysis import analyze
    from sparse_rcnn.platform.stats.table import read_table

    runs = read_table(args.table, metric=args.metric, scale=args.scale)
    try:
        result = analyze(
            runs,
            metric=args.metric,
            alpha=args.alpha,
            effect_size=args.effect_size,
            baseline=args.baseline,
            paired=args.paired,
            name=str(args.table),
            max_seeds=args.max_seeds,
            spending=args.spending,
            futility=args.futility,
        )
    except ValueError as e:
        raise UserError(str(e)) from None
    for line in conclusions(result):
        print(line)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(analysis_json(result), indent=1, allow_nan=False))
        print(f"json: {args.json_out}")
    if args.md_out is not None:
        args.md_out.write_text(to_markdown(result, title=f"Analysis of {args.table.name}"))
        print(f"markdown: {args.md_out}")
    return 0

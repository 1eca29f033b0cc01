"""``sparse-rcnn eval``: table, JSON output, bootstrap and --compare, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparse_rcnn.platform.cli.main import main
from sparse_rcnn.platform.evaluation.bootstrap import bootstrap, paired_bootstrap
from sparse_rcnn.platform.evaluation.coco_eval import MMDET_MAX_DETS, evaluate
from sparse_rcnn.platform.evaluation.detections import Detections, save_detections


@pytest.fixture
def files(tmp_path, coco_case):
    gt, dets = coco_case
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    a = Detections.from_coco_results(dets)
    save_detections(a, tmp_path / "a.parquet")
    rng = np.random.default_rng(0)
    b = Detections(a.image_id, a.category_id, rng.permutation(a.score), a.bbox)
    save_detections(b, tmp_path / "b.json")
    return gt, gt_path, a, b, tmp_path


def test_eval_prints_table_and_writes_json(files, capsys):
    gt, gt_path, a, _, tmp = files
    out = tmp / "out" / "res.json"
    rc = main(["eval", "--gt", str(gt_path), "--detections", str(tmp / "a.parquet"),
               "--json-out", str(out)])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    expected = evaluate(gt, a)
    assert f"{100 * expected.stats['AP']:.2f}" in printed and "AR100" in printed
    saved = json.loads(out.read_text())
    assert saved["stats"] == pytest.approx(expected.stats)
    assert saved["per_category_ap"]["20"] is None  # no ground truth: NaN -> null


def test_eval_bootstrap_is_seeded(files, capsys):
    gt, gt_path, a, _, tmp = files
    args = ["eval", "--gt", str(gt_path), "--detections", str(tmp / "a.parquet"),
            "--bootstrap", "60", "--seed", "3", "--max-dets", "mmdet"]  # fmt: skip
    assert main([*args, "--json-out", str(tmp / "1.json")]) == 0
    assert main([*args, "--json-out", str(tmp / "2.json")]) == 0
    printed = capsys.readouterr().out
    assert "95% percentile CIs over 60 image-bootstrap replicates (seed 3)" in printed
    first = json.loads((tmp / "1.json").read_text())
    assert first == json.loads((tmp / "2.json").read_text())
    ref = bootstrap(gt, a, num_replicates=60, seed=3, max_dets=MMDET_MAX_DETS)
    assert first["bootstrap"]["ci"]["AP"] == pytest.approx([ref.ci_low[0], ref.ci_high[0]])
    assert "AR1000" in first["stats"]


def test_eval_compare_runs_paired_bootstrap(files, capsys):
    gt, gt_path, a, b, tmp = files
    rc = main(["eval", "--gt", str(gt_path), "--detections", str(tmp / "a.parquet"),
               "--compare", str(tmp / "b.json"), "--bootstrap", "50",
               "--json-out", str(tmp / "c.json")])  # fmt: skip
    assert rc == 0
    assert "P(A-B>0)" in capsys.readouterr().out
    saved = json.loads((tmp / "c.json").read_text())["compare"]
    ref = paired_bootstrap(gt, a, b, num_replicates=50, seed=0)
    assert saved["prob_positive"]["AP"] == pytest.approx(ref.prob_positive[0])
    assert saved["diff"]["AP"] == pytest.approx(ref.diff[0])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--detections", "missing.parquet"], "not found"),
        (["--detections", "dets.csv"], "'.csv'"),
        (["--bootstrap", "0"], "--bootstrap"),
    ],
)
def test_eval_bad_input_is_one_line_error(files, capsys, extra, message):
    _, gt_path, _, _, tmp = files
    args = ["eval", "--gt", str(gt_path), "--detections", str(tmp / "a.parquet"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1

"""``sparse-rcnn eval``: table, JSON output, bootstrap and --compare, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

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


GT = {
    "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
    "categories": [{"id": 1, "name": "a"}],
    "annotations": [
        {"id": k, "image_id": k, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400,
         "iscrowd": 0} for k in (1, 2)
    ],
}  # fmt: skip
DET = {"image_id": 2, "category_id": 1, "score": 0.9, "bbox": [10, 10, 20, 20]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image_id": 2.7}, "entry 1: image_id is 2.7, not an integer"),
        ({"image_id": "2"}, 'entry 1: image_id is "2", not an integer'),
        ({"category_id": True}, "entry 1: category_id is true, not an integer"),
        ({"score": "0.9"}, 'entry 1: score is "0.9", not a number'),
        ({"score": None}, "entry 1: score is null, not a number"),
        ({"bbox": [10, 10, "20", 20]}, 'entry 1: bbox value is "20", not a number'),
    ],
)
def test_eval_refuses_non_integer_ids_and_non_numeric_scores(tmp_path, capsys, change, message):
    gt, dets = tmp_path / "gt.json", tmp_path / "dets.json"
    gt.write_text(json.dumps(GT))
    dets.write_text(json.dumps([DET, {**DET, **change}]))
    assert main(["eval", "--gt", str(gt), "--detections", str(dets)]) == 2
    assert capsys.readouterr().err == f"sparse-rcnn eval: error: {dets}: {message}\n"


def test_eval_accepts_integral_float_ids(tmp_path, capsys):
    gt, dets = tmp_path / "gt.json", tmp_path / "dets.json"
    gt.write_text(json.dumps(GT))
    dets.write_text(json.dumps([{**DET, "image_id": 2.0, "score": 1}]))
    assert main(["eval", "--gt", str(gt), "--detections", str(dets)]) == 0


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("image_id", [2.7], "Parquet column 'image_id' row 0 holds 2.7, expected integers"),
        ("score", ["hi"], "Parquet column 'score' holds string, expected numbers"),
        ("category_id", [True], "Parquet column 'category_id' holds bool, expected numbers"),
    ],
)
def test_eval_parquet_columns_are_typed(tmp_path, capsys, column, values, message):
    import pyarrow as pa
    import pyarrow.parquet as pq

    gt, dets = tmp_path / "gt.json", tmp_path / "dets.parquet"
    gt.write_text(json.dumps(GT))
    cols = {"image_id": [2], "category_id": [1], "score": [0.9], "x": [10.0], "y": [10.0],
            "w": [20.0], "h": [20.0], column: values}  # fmt: skip
    pq.write_table(pa.table(cols), dets)
    assert main(["eval", "--gt", str(gt), "--detections", str(dets)]) == 2
    assert capsys.readouterr().err == f"sparse-rcnn eval: error: {dets}: {message}\n"


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("annotation", "annotations[1]: image_id is 2.5, not an integer"),
        ("image", "images[0]: id is 1.5, not an integer"),
    ],
)
def test_eval_refuses_non_integer_ids_in_the_ground_truth(tmp_path, capsys, where, message):
    bad = json.loads(json.dumps(GT))
    if where == "annotation":
        bad["annotations"][1]["image_id"] = 2.5
    else:
        bad["images"][0]["id"] = 1.5
    gt, dets = tmp_path / "gt.json", tmp_path / "dets.json"
    gt.write_text(json.dumps(bad))
    dets.write_text(json.dumps([DET]))
    assert main(["eval", "--gt", str(gt), "--detections", str(dets)]) == 2
    assert capsys.readouterr().err == f"sparse-rcnn eval: error: {gt}: {message}\n"


FRAMEWORKS = {"torch", "torchvision", "ray", "mlflow"}


@pytest.mark.parametrize(
    ("extra", "not_imported"),
    [
        ([], FRAMEWORKS | {"scipy", "pyarrow"}),  # scipy only for bootstrap batches
        (["--bootstrap", "5", "--compare", "DETS"], FRAMEWORKS | {"pyarrow"}),
    ],
)
def test_eval_in_a_fresh_interpreter_imports_no_framework(tmp_path, extra, not_imported):
    """``sparse-rcnn eval`` of JSON files starts without torch, Ray or MLflow (whose imports
    alone take longer than the whole evaluation); without --bootstrap, without scipy too."""
    gt, dets = tmp_path / "gt.json", tmp_path / "dets.json"
    gt.write_text(json.dumps(GT))
    dets.write_text(json.dumps([DET, {**DET, "image_id": 1, "score": 0.5}]))
    code = (
        "import json, sys\n"
        "from sparse_rcnn.platform.cli.main import main\n"
        "rc = main(sys.argv[1:])\n"
        "print(json.dumps([rc, sorted({m.split('.')[0] for m in sys.modules})]))"
    )
    argv = ["eval", "--gt", str(gt), "--detections", str(dets)]
    argv += [str(dets) if a == "DETS" else a for a in extra]
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True
    )
    rc, modules = json.loads(proc.stdout.splitlines()[-1])
    assert rc == 0
    assert "msgspec" in modules  # the JSON files went through the typed decoder
    assert not_imported.isdisjoint(modules), sorted(not_imported & set(modules))

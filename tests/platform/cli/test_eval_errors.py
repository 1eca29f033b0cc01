"""``sparse-rcnn eval``: one line naming the file (and column) for each bad input, checked
before any metric is printed."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sparse_rcnn.platform.cli.main import main
from sparse_rcnn.platform.data.synthetic import make_synthetic, split_paths

DET = {"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [1.0, 2.0, 30.0, 40.0]}


@pytest.fixture(scope="module")
def gt(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval") / "syn"
    make_synthetic(root, num_images=2, seed=0, val_fraction=0.0, min_size=64, max_size=64)
    return split_paths(root, "train")[0]  # image ids 1 and 2


def write_json(path, results):
    path.write_text(json.dumps(results))
    return path


def test_json_out_a_directory_fails_before_the_metrics(gt, tmp_path, cli_error, capsys):
    dets = write_json(tmp_path / "d.json", [DET])
    (tmp_path / "res").mkdir()
    rc = main(["eval", "--gt", str(gt), "--detections", str(dets), "--json-out",
               str(tmp_path / "res")])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    res = tmp_path / "res"
    assert (
        captured.err
        == f"sparse-rcnn eval: error: --json-out {res} is a directory; give a file name\n"
    )


def test_json_out_under_a_file(gt, tmp_path, cli_error):
    dets = write_json(tmp_path / "d.json", [DET])
    (tmp_path / "f").write_text("x")
    msg = cli_error(
        "eval", "--gt", gt, "--detections", dets, "--json-out", tmp_path / "f" / "r.json"
    )
    assert (
        msg == f"--json-out {tmp_path / 'f' / 'r.json'}: {tmp_path / 'f'} is a file, not a folder"
    )


def test_json_out_is_written_without_a_temporary_file(gt, tmp_path, capsys):
    dets = write_json(tmp_path / "d.json", [DET])
    out = tmp_path / "new" / "r.json"
    assert main(["eval", "--gt", str(gt), "--detections", str(dets), "--json-out", str(out)]) == 0
    assert "AP" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["r.json"]
    assert json.loads(out.read_text())["detections"] == str(dets)


def test_a_string_column_in_parquet_names_file_and_column(gt, tmp_path, cli_error):
    path = tmp_path / "d.parquet"
    cols = {k: [v] for k, v in DET.items() if k != "bbox"}
    cols |= dict(zip("xywh", ([v] for v in DET["bbox"]), strict=True))
    pq.write_table(pa.table({**cols, "score": ["hi"]}), path)
    msg = cli_error("eval", "--gt", gt, "--detections", path)
    assert msg == f"{path}: Parquet column 'score' holds string, expected numbers"


@pytest.mark.parametrize("which", ["--gt", "--detections"])
def test_a_directory_instead_of_a_file(gt, tmp_path, cli_error, which):
    dets = write_json(tmp_path / "d.json", [DET])
    folder = tmp_path / "x.json"
    folder.mkdir()
    args = {"--gt": gt, "--detections": dets} | {which: folder}
    msg = cli_error("eval", *(x for kv in args.items() for x in kv))
    kind = {"--gt": "ground truth", "--detections": "detections"}[which]
    what = {"--gt": "the COCO JSON file", "--detections": "the detections file"}[which]
    assert msg == f"{kind} {folder} is a directory; give {what}"


def test_detections_on_unknown_images_name_the_file(gt, tmp_path, cli_error):
    dets = write_json(tmp_path / "d.json", [DET | {"image_id": 99}])
    msg = cli_error("eval", "--gt", gt, "--detections", dets)
    assert msg == (
        f"{dets}: 1 detections are on 1 image ids that the ground truth does not list, e.g. [99]"
    )


def test_a_nan_score_names_the_file(gt, tmp_path, cli_error):
    dets = tmp_path / "d.json"
    dets.write_text(json.dumps([DET]).replace("0.9", "NaN"))
    msg = cli_error("eval", "--gt", gt, "--detections", dets)
    assert msg == f"{dets}: 1 detections have a non-finite score"


def test_a_negative_seed(gt, tmp_path, cli_error):
    dets = write_json(tmp_path / "d.json", [DET])
    msg = cli_error("eval", "--gt", gt, "--detections", dets, "--bootstrap", "5", "--seed", "-1")
    assert msg == "--seed must be >= 0, got -1"

"""``sparse-rcnn convert-checkpoint``: one line for each bad input, and no temporary file left."""

from __future__ import annotations

import pytest
import torch

from sparse_rcnn.models.config import PRESETS
from sparse_rcnn.models.detector import SparseRCNN
from sparse_rcnn.platform.cli.main import main

# The tiny preset's layout as mmdetection would save it (ResNet-18, the smallest depth whose
# architecture convert-checkpoint reads off the shapes).
CFG = PRESETS["tiny"].replace(num_proposals=8, num_stages=2)
KEY = "roi_head.bbox_head.0.fc_cls.weight"
FEATURES = "rpn_head.init_proposal_features.weight"


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """A valid mmdetection-style checkpoint, one lacking KEY, one with a 1-d FEATURES."""
    tmp = tmp_path_factory.mktemp("convert")
    torch.manual_seed(0)
    sd = SparseRCNN(CFG).state_dict()
    paths = {name: tmp / f"{name}.pth" for name in ("good", "missing_key", "bad_rank")}
    torch.save({"meta": {"mmdet_version": "2.8.0"}, "state_dict": sd}, paths["good"])
    torch.save({"state_dict": {k: v for k, v in sd.items() if k != KEY}}, paths["missing_key"])
    torch.save({"state_dict": {**sd, FEATURES: torch.zeros(5)}}, paths["bad_rank"])
    return paths


def test_convert_into_a_directory_leaves_nothing_behind(ckpts, tmp_path, cli_error):
    out = tmp_path / "out"
    out.mkdir()
    msg = cli_error("convert-checkpoint", ckpts["good"], out)
    assert msg == f"{out} is a directory; give a file name"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert list(out.iterdir()) == []


def test_convert_under_a_file_is_refused(ckpts, tmp_path, cli_error):
    (tmp_path / "f").write_text("x")
    msg = cli_error("convert-checkpoint", ckpts["good"], tmp_path / "f" / "out.pt")
    assert msg == f"{tmp_path / 'f' / 'out.pt'}: {tmp_path / 'f'} is a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_convert_writes_atomically(ckpts, tmp_path, capsys):
    out = tmp_path / "sub" / "tiny.pt"
    assert main(["convert-checkpoint", str(ckpts["good"]), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["tiny.pt"]  # no .tmp beside it


def test_a_text_file_is_not_a_checkpoint(tmp_path, cli_error):
    src = tmp_path / "notes.pth"
    src.write_text("hello\n")
    msg = cli_error("convert-checkpoint", src, tmp_path / "out.pt")
    assert msg == f"{src}: not a PyTorch checkpoint (torch.save file)"
    assert not (tmp_path / "out.pt").exists()


def test_an_empty_file_is_not_a_checkpoint(tmp_path, cli_error):
    src = tmp_path / "empty.pth"
    src.write_bytes(b"")
    msg = cli_error("convert-checkpoint", src, tmp_path / "out.pt")
    assert msg == f"{src}: the file is empty, not a PyTorch checkpoint"


def test_a_directory_is_not_a_checkpoint(tmp_path, cli_error):
    msg = cli_error("convert-checkpoint", tmp_path, tmp_path / "out.pt")
    assert msg == f"checkpoint {tmp_path} is a directory; give the checkpoint file"


def test_a_missing_key_is_named(ckpts, tmp_path, cli_error):
    msg = cli_error("convert-checkpoint", ckpts["missing_key"], tmp_path / "out.pt")
    assert msg == (
        f"{ckpts['missing_key']}: checkpoint lacks key '{KEY}', which every Sparse R-CNN "
        "checkpoint has"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_missing_key_names_the_preset(ckpts, tmp_path, cli_error):
    msg = cli_error("convert-checkpoint", ckpts["missing_key"], tmp_path / "o.pt", "--preset",
                    "tiny")  # fmt: skip
    assert msg.startswith(f"{ckpts['missing_key']}: checkpoint does not fit the model: ")
    assert f"missing key(s): {KEY}" in msg and msg.endswith("(architecture of --preset tiny)")


def test_a_tensor_of_the_wrong_rank_is_named(ckpts, tmp_path, cli_error):
    msg = cli_error("convert-checkpoint", ckpts["bad_rank"], tmp_path / "out.pt")
    assert msg == (
        f"{ckpts['bad_rank']}: {FEATURES} has shape (5,); a Sparse R-CNN checkpoint has a 2-d "
        "tensor there"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_preset_lists_the_presets(ckpts, tmp_path, cli_error):
    msg = cli_error("convert-checkpoint", ckpts["good"], tmp_path / "o.pt", "--preset", "r50")
    assert msg == f"--preset: unknown model preset 'r50'; choose one of {sorted(PRESETS)}"

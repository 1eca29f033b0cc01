"""``sparse-rcnn make-synthetic``: one line for each bad output folder or size, nothing written."""

from __future__ import annotations


def test_a_file_where_the_folder_goes(tmp_path, cli_error):
    out = tmp_path / "data"
    out.write_text("x")
    msg = cli_error("make-synthetic", out, "--images", "2")
    assert msg == f"{out} is a file, not a folder"
    assert out.read_text() == "x"


def test_a_folder_under_a_file(tmp_path, cli_error):
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" / "data"
    msg = cli_error("make-synthetic", out, "--images", "2")
    assert msg == f"{out}: {tmp_path / 'f'} is a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_huge_image_size_is_refused_before_drawing(tmp_path, cli_error):
    out = tmp_path / "data"
    msg = cli_error("make-synthetic", out, "--images", "2", "--min-size", "100000",
                    "--max-size", "100000")  # fmt: skip
    assert msg == "need 64 <= min_size <= max_size <= 4096, got 100000 and 100000"
    assert not out.exists()


def test_min_size_above_max_size(tmp_path, cli_error):
    msg = cli_error("make-synthetic", tmp_path / "d", "--min-size", "500", "--max-size", "100")
    assert msg == "need 64 <= min_size <= max_size <= 4096, got 500 and 100"


def test_an_existing_dataset_needs_overwrite(tmp_path, cli_error, capsys):
    from sparse_rcnn.platform.cli.main import main

    out = tmp_path / "data"
    args = ["make-synthetic", str(out), "--images", "1", "--min-size", "64", "--max-size", "64"]
    assert main(args) == 0
    capsys.readouterr()
    msg = cli_error(*args)
    assert msg == (
        f"{out} already holds a dataset ({out / 'annotations' / 'instances_train.json'}); "
        "pass --overwrite to replace it"
    )


def test_an_empty_output_folder_name(tmp_path, monkeypatch, cli_error):
    monkeypatch.chdir(tmp_path)  # "" would mean the working directory
    assert (
        cli_error("make-synthetic", "", "--images", "1") == "OUT is empty; give the dataset folder"
    )
    assert list(tmp_path.iterdir()) == []

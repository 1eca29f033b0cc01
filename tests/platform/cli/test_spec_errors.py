"""Bad job and study specs: one line naming the field, exit 2, before any Ray start.

Each case is a row of docs/errors.md ("Job and study specs"); the messages are asserted exactly.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml

from sparse_rcnn.platform.cli.main import main


@pytest.fixture
def job_yaml(tmp_path, small_job):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(small_job()))
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no traceback
    return err.rstrip("\n")


INVALID = "sparse-rcnn train: error: {path}: invalid spec: "

# Runs the CLI in a fresh interpreter (no Ray from another test can be up there) and reports
# its exit code, the seconds main() took and whether it left Ray initialised.
_FRESH = """
import json, sys, time
from sparse_rcnn.platform.cli.main import main
start = time.monotonic()
rc = main(sys.argv[1:])
took = time.monotonic() - start
ray = sys.modules.get("ray")
up = bool(ray is not None and ray.is_initialized())
print(json.dumps({"rc": rc, "took": took, "ray_up": up}))
"""


def run_fresh(*args: str) -> tuple[int, float, bool, str]:
    """``(exit code, seconds, Ray left up, stderr)`` of ``sparse-rcnn ARGS`` in a new process."""
    import json

    done = subprocess.run([sys.executable, "-c", _FRESH, *args], capture_output=True, text=True)
    assert done.stdout.strip(), done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["rc"], out["took"], out["ray_up"], done.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=.inf", "optimizer.lr: Input should be a finite number, got .inf"),
        (
            "optimizer.weight_decay=.inf",
            "optimizer.weight_decay: Input should be a finite number, got .inf",
        ),
        (
            "optimizer.clip_grad_norm=.inf",
            "optimizer.clip_grad_norm: Input should be a finite number, got .inf",
        ),
        (
            "scaling.resources_per_worker.CPU=.nan",
            "scaling.resources_per_worker.CPU: Input should be a finite number, got .nan",
        ),
        (
            "optimizer.betas=[0.9, .inf]",
            "optimizer.betas.1: Input should be a finite number, got .inf",
        ),
        (
            "optimizer.betas=[0.9, 1.5]",
            "optimizer.betas: each beta must be in [0, 1), got [0.9, 1.5]",
        ),
        ("optimizer.lr=true", "optimizer.lr: expected a number, got true"),
        (
            "scaling.num_workers=true",
            "scaling.num_workers: Input should be a valid integer, got true",
        ),
        ("scaling.use_gpu=1", "scaling.use_gpu: Input should be a valid boolean, got 1"),
        ("schedule.epochs=2.5", "schedule.epochs: Input should be a valid integer, got 2.5"),
        ("seeds.seed=false", "seeds.seed: Input should be a valid integer, got false"),
        (
            "eval_max_dets=[100, 10, 1]",
            "eval_max_dets: max_dets must be three increasing positive ints, got [100, 10, 1]",
        ),
        (
            "eval_max_dets=[1, 10, 50]",
            "eval_max_dets: max_dets must contain 100: COCOeval reports AP at maxDets=100, "
            "got [1, 10, 50]",
        ),
        (
            "dataset.synthetic.min_size=500",
            "dataset.synthetic: need 64 <= min_size <= max_size <= 4096, got 500 and 160",
        ),
    ],
)
def test_bad_job_values_are_one_line_at_dry_run(job_yaml, capsys, override, message):
    assert main(["train", str(job_yaml), "--dry-run", "--set", override]) == 2
    assert one_error_line(capsys) == INVALID.format(path=job_yaml) + message


def test_yaml_integers_and_booleans_still_work(job_yaml, capsys):
    sets = ["scaling.num_workers=1", "optimizer.lr=1", "deterministic=true", "seeds.seed=3"]
    assert (
        main(["train", str(job_yaml), "--dry-run", *(a for s in sets for a in ("--set", s))]) == 0
    )
    spec = yaml.safe_load(capsys.readouterr().out)
    assert spec["optimizer"]["lr"] == 1.0 and spec["scaling"]["num_workers"] == 1


def test_synthetic_sizes_follow_the_generators_rule(tmp_path, job_yaml, capsys):
    """The spec and make-synthetic refuse min_size > max_size with the same words."""
    rule = "need 64 <= min_size <= max_size <= 4096, got 500 and 100"
    sets = ["--set", "dataset.synthetic.min_size=500", "--set", "dataset.synthetic.max_size=100"]
    assert main(["train", str(job_yaml), "--dry-run", *sets]) == 2
    assert one_error_line(capsys) == INVALID.format(path=job_yaml) + f"dataset.synthetic: {rule}"
    out = tmp_path / "synth"
    assert main(["make-synthetic", str(out), "--min-size", "500", "--max-size", "100"]) == 2
    assert one_error_line(capsys) == f"sparse-rcnn make-synthetic: error: {rule}"


def coco_job(tmp_path, small_job, **paths) -> str:
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "ann.json").write_text("{}")
    dataset = {"kind": "coco", "train_ann": str(tmp_path / "ann.json"),
               "train_images": str(tmp_path / "images"), "val_ann": str(tmp_path / "ann.json"),
               "val_images": str(tmp_path / "images"), **paths}  # fmt: skip
    path = tmp_path / "coco.yaml"
    path.write_text(yaml.safe_dump(small_job(dataset=dataset)))
    return str(path)


@pytest.fixture
def no_ray_address(monkeypatch):
    """A local Ray would start; what ``train`` sets for it is undone after the test."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_OVERRIDE_RESOURCES", raising=False)
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        ({"val_ann": "/no/such/val.json"}, "dataset.val_ann: file not found: /no/such/val.json"),
        ({"train_images": "/no/such/dir"}, "dataset.train_images: folder not found: /no/such/dir"),
        (
            {"val_images": "{ann}"},
            "dataset.val_images: expected a folder of images, found a file: {ann}",
        ),
    ],
)
def test_missing_dataset_files_fail_before_ray_starts(
    tmp_path, small_job, capsys, no_ray_address, state_dir, paths, message
):
    import ray

    ann = str(tmp_path / "ann.json")
    paths = {k: v.format(ann=ann) for k, v in paths.items()}
    spec = coco_job(tmp_path, small_job, **paths)
    assert main(["train", spec, "--dry-run"]) == 2
    assert one_error_line(capsys) == f"sparse-rcnn train: error: {spec}: {message.format(ann=ann)}"
    was_up = ray.is_initialized()
    start = time.monotonic()
    assert main(["train", spec]) == 2  # the real command, not only the dry run
    assert time.monotonic() - start < 10
    assert ray.is_initialized() == was_up  # this command started no Ray
    assert one_error_line(capsys) == f"sparse-rcnn train: error: {spec}: {message.format(ann=ann)}"


def test_impossible_resources_fail_before_ray_starts(job_yaml, no_ray_address, state_dir):
    args = ["train", str(job_yaml), "--set", "scaling.resources_per_worker={CPU: 1, GPU: 4096}"]
    rc, took, ray_up, err = run_fresh(*args)
    assert rc == 2 and took < 10 and not ray_up, err
    assert err.count("\n") == 1, err  # one line, no traceback
    line = err.rstrip("\n")
    assert line.startswith(
        "sparse-rcnn train: error: on this machine (local Ray): scaling asks for 1 workers x "
        "{'CPU': 1.0, 'GPU': 4096.0}, more than the cluster has (GPU: needs 4096, cluster has "
    ), line
    assert line.endswith("); lower scaling.num_workers or resources_per_worker")
    rc, _, ray_up, err = run_fresh("train", str(job_yaml), "--set", "scaling.num_workers=100000")
    assert rc == 2 and not ray_up and err.count("\n") == 1, err
    assert "CPU: needs 100000, cluster has" in err
    # A dry run checks files, not this machine's resources: it may prepare a cluster's job.
    assert main(["train", str(job_yaml), "--dry-run", "--set", "scaling.num_workers=100000"]) == 0


# -- studies ----------------------------------------------------------------------------------


@pytest.fixture
def study(tmp_path, job_yaml):
    def write(**fields) -> str:
        path = tmp_path / "study.yaml"
        path.write_text(yaml.safe_dump({"name": "st", "job": job_yaml.name, **fields}))
        return str(path)

    return write


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"seeds": True},
            "invalid spec: seeds: seeds must be a count >= 1 or a list of distinct ints >= 0, "
            "got true",
        ),
        (
            {"seeds": [0, True]},
            "invalid spec: seeds: seeds must be a count >= 1 or a list of distinct ints >= 0, "
            "got [0, true]",
        ),
        (
            {"seeds": 2.0},
            "invalid spec: seeds: seeds must be a count >= 1 or a list of distinct ints >= 0, "
            "got 2.0",
        ),
        (
            {"seeds": 2, "vary": {"optimizer.lr": [1, 1.0]}},
            "vary: settings 0 (optimizer.lr=1) and 1 (optimizer.lr=1.0) are the same job once "
            "values are read as their field types; remove the repeated value",
        ),
        (
            {"seeds": 2, "vary": {"optimizer.lr": [0.00123456781, 0.00123456789]}},
            "vary: settings 0 (optimizer.lr=0.00123456781) and 1 (optimizer.lr=0.00123456789) "
            "have the same label 'optimizer.lr=0.00123457'; use values that differ in their "
            "first 6 significant digits",
        ),
        (
            {"seeds": 2000},
            "the study expands to 2000 trials (1 setting x 2000 runs), more than max_trials "
            "1000; shrink vary or seeds, or raise max_trials",
        ),
        (
            {"seeds": 5, "vary": {"optimizer.lr": [1e-3, 2e-3]}, "max_trials": 8},
            "the study expands to 10 trials (2 settings x 5 runs), more than max_trials 8; "
            "shrink vary or seeds, or raise max_trials",
        ),
        (
            {"max_trials": True},
            "invalid spec: max_trials: Input should be a valid integer, got true",
        ),
        ({"alpha": float("nan")}, "invalid spec: alpha: Input should be a finite number, got .nan"),
        (
            {"vary": {"optimizer.lr": [1e-3, float("inf")]}},
            "setting 1 (optimizer.lr=inf): invalid spec: optimizer.lr: Input should be a finite "
            "number, got .inf",
        ),
    ],
)
def test_bad_studies_are_one_line_at_dry_run(study, capsys, fields, message):
    path = study(**fields)
    assert main(["study", path, "--dry-run"]) == 2
    assert one_error_line(capsys) == f"sparse-rcnn study: error: {path}: {message}"


def test_max_trials_can_be_raised(study, capsys):
    assert main(["study", study(seeds=1001, max_trials=1001), "--dry-run"]) == 0
    assert "1001 trials, 1 settings" in capsys.readouterr().out


def test_a_study_checks_its_dataset_files_before_ray(tmp_path, small_job, capsys, no_ray_address):
    spec = coco_job(tmp_path, small_job, train_ann="/no/such/train.json")
    path = tmp_path / "st.yaml"
    path.write_text(yaml.safe_dump({"name": "st", "job": "coco.yaml", "seeds": 2}))
    assert main(["study", str(path), "--dry-run"]) == 2
    assert one_error_line(capsys) == (
        f"sparse-rcnn study: error: {path}: dataset.train_ann: file not found: /no/such/train.json"
    )
    assert spec


def test_a_dry_run_does_not_import_ray(tmp_path, small_job):
    """The CLI checks files before it sets the environment Ray reads at import (loopback)."""
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(small_job()))
    code = (
        "import sys\n"
        "from sparse_rcnn.platform.cli.main import main\n"
        f"assert main(['train', {str(job)!r}, '--dry-run']) == 0\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_study_checks_local_resources_before_ray(tmp_path, small_job, no_ray_address):
    (tmp_path / "gpu.yaml").write_text(
        yaml.safe_dump(small_job(**{"scaling.resources_per_worker": {"CPU": 1, "GPU": 4096}}))
    )
    path = tmp_path / "st.yaml"
    path.write_text(yaml.safe_dump({"name": "st", "job": "gpu.yaml", "seeds": 2}))
    rc, took, ray_up, err = run_fresh("study", str(path))
    assert rc == 2 and took < 10 and not ray_up, err
    assert err.count("\n") == 1, err
    line = err.rstrip("\n")
    assert line.startswith("sparse-rcnn study: error: on this machine (local Ray): scaling asks ")
    assert "GPU: needs 4096, cluster has " in line


def test_a_sequential_study_lists_its_waves(study, capsys):
    path = study(design="sequential", seeds={"initial": 2, "step": 2, "max": 5},
                 vary={"optimizer.lr": [1e-3, 2e-3]})  # fmt: skip
    assert main(["study", path, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "s0-all-r4" in out and "s1-all-r4" in out
    assert out.count("wave=1") == 4 and out.count("wave=3") == 2  # 2 settings
    assert "seeds per setting after each wave 2, 4, 5" in out


def test_a_sequential_study_needs_a_setting_to_compare(study, capsys):
    path = study(design="sequential", seeds={"initial": 2, "step": 2, "max": 5})
    assert main(["study", path, "--dry-run"]) == 2  # before Ray or MLflow start
    line = one_error_line(capsys)
    assert line.startswith("sparse-rcnn study: error: ")
    assert (
        "vary: design sequential compares settings with the baseline (the first); vary at "
        "least one field over two or more values" in line
    )

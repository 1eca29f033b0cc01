from __future__ import annotations

from pathlib import Path

import pytest

from sparse_rcnn.platform.spec.load import SpecError, dump_spec, flatten, load_job_spec

JOBS = Path(__file__).resolve().parents[3] / "jobs"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_every_job_in_the_repo_validates():
    files = sorted(JOBS.glob("*.yaml"))
    assert files
    for f in files:
        load_job_spec(f)


def test_reference_recipes_are_faithful():
    r50 = load_job_spec(JOBS / "r50_fpn_1x.yaml")
    assert r50.total_batch_size == 16 and r50.scaling.num_workers == 8
    assert (r50.optimizer.lr, r50.optimizer.weight_decay, r50.optimizer.clip_grad_norm) == (
        2.5e-5, 1e-4, 1.0,
    )  # fmt: skip
    assert (r50.schedule.epochs, r50.schedule.lr_steps) == (12, [8, 11])
    assert (r50.schedule.warmup_iters, r50.schedule.warmup_ratio) == (500, 0.001)
    assert r50.dataset.pipeline == "single_scale"
    ms = load_job_spec(JOBS / "r50_fpn_ms_3x.yaml")
    assert (ms.schedule.epochs, ms.schedule.lr_steps, ms.dataset.pipeline) == (
        36, [27, 33], "multiscale",
    )  # fmt: skip
    crop = load_job_spec(JOBS / "r101_fpn_300_crop_ms_3x.yaml")
    cfg = crop.model.resolve()
    assert (cfg.backbone_depth, cfg.num_proposals, crop.dataset.pipeline) == (
        101, 300, "crop_multiscale",
    )  # fmt: skip


def test_unknown_key_names_its_path(tmp_path):
    p = write(tmp_path, "a.yaml", "dataset: {kind: synthetic}\nschedule: {epochz: 3}\n")
    with pytest.raises(SpecError, match=r"schedule\.epochz: unknown key"):
        load_job_spec(p)


def test_wrong_type_and_allowed_values(tmp_path):
    p = write(tmp_path, "a.yaml", "dataset: {kind: synthetic}\nbatch_size_per_worker: two\n")
    with pytest.raises(SpecError, match=r"batch_size_per_worker: Input should be a valid integer"):
        load_job_spec(p)
    p = write(tmp_path, "b.yaml", "dataset: {kind: synthetic}\nprecision: fp16\n")
    with pytest.raises(SpecError, match=r"precision: Input should be 'fp32' or 'bf16'"):
        load_job_spec(p)
    p = write(tmp_path, "c.yaml", "dataset: {kind: synthetic}\nmodel: {preset: r18}\n")
    with pytest.raises(SpecError, match=r"model\.preset: .*allowed: \['r101_fpn"):
        load_job_spec(p)
    p = write(tmp_path, "d.yaml", "dataset: {kind: synthetic}\nmodel: {overrides: {depth: 3}}\n")
    with pytest.raises(SpecError, match=r"model: .*unknown model config field\(s\): \['depth'\]"):
        load_job_spec(p)


def test_missing_dataset(tmp_path):
    p = write(tmp_path, "a.yaml", "name: x\n")
    with pytest.raises(SpecError, match=r"dataset: required field is missing"):
        load_job_spec(p)
    p = write(tmp_path, "b.yaml", "dataset: {kind: coco, train_ann: a.json}\n")
    with pytest.raises(SpecError, match=r"kind 'coco' needs \['train_images', 'val_ann'"):
        load_job_spec(p)


def test_schedule_steps_must_be_inside_the_run(tmp_path):
    p = write(
        tmp_path, "a.yaml", "dataset: {kind: synthetic}\nschedule: {epochs: 4, lr_steps: [5]}\n"
    )
    with pytest.raises(SpecError, match=r"lr_steps must be increasing epochs in 1..3"):
        load_job_spec(p)


def test_extends_one_level_and_overrides(tmp_path):
    write(
        tmp_path, "base.yaml", "dataset: {kind: synthetic}\nschedule: {epochs: 5, lr_steps: [3]}\n"
    )
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nschedule: {epochs: 7}\n")
    spec = load_job_spec(child, ["seeds.seed=4", "scaling.num_workers=2"])
    assert (spec.schedule.epochs, spec.schedule.lr_steps) == (7, [3])
    assert (spec.seeds.seed, spec.scaling.num_workers) == (4, 2)
    grandchild = write(tmp_path, "gc.yaml", "extends: child.yaml\n")
    with pytest.raises(SpecError, match="only one level of extends"):
        load_job_spec(grandchild)
    with pytest.raises(SpecError, match=r"--set 'seeds.seed': expected key.path=value"):
        load_job_spec(child, ["seeds.seed"])
    with pytest.raises(SpecError, match=r"seeds\.seed: Input should be greater than or equal to 0"):
        load_job_spec(child, ["seeds.seed=-1"])


def test_seeds_derive_from_one_seed_and_vary_alone():
    base = load_job_spec(JOBS / "tiny_synthetic.yaml")
    a = base.seeds.resolved()
    b = load_job_spec(JOBS / "tiny_synthetic.yaml", ["seeds.seed=1"]).seeds.resolved()
    assert all(a[k] != b[k] for k in a) and len(set(a.values())) == 3
    c = load_job_spec(JOBS / "tiny_synthetic.yaml", ["seeds.init=7"]).seeds.resolved()
    assert c["init"] == 7 and c["data_order"] == a["data_order"]
    assert c["augmentation"] == a["augmentation"]


def test_resolved_spec_round_trips(tmp_path):
    spec = load_job_spec(JOBS / "tiny_synthetic.yaml")
    p = write(tmp_path, "resolved.yaml", dump_spec(spec))
    assert load_job_spec(p) == spec
    flat = flatten(spec.model_dump(mode="json"))
    assert flat["schedule.epochs"] == spec.schedule.epochs and "model.preset" in flat

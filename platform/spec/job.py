"""The job spec: everything a training run needs, validated once at load.

A spec is flat YAML (sections below), with at most one level of ``extends: other.yaml``
(relative to the file). Unknown keys, wrong types and impossible values fail with the field path
and the allowed values. Defaults are the mmdetection ``sparse_rcnn_r50_fpn_1x_coco`` recipe.

Types are checked without surprises: numbers must be finite (``.inf``/``.nan`` are refused), a
count or seed is a YAML integer (``true`` or ``2.5`` is refused, not read as 1 or 2), a switch is
a YAML boolean (``1`` is refused), and a number is never a boolean. Rules shared with the code
that uses a value (COCOeval ``maxDets``, the synthetic generator's sizes) are the same functions.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from sparse_rcnn.models.config import PRESETS, ModelConfig
from sparse_rcnn.platform.data.synthetic import check_settings
from sparse_rcnn.platform.evaluation.max_dets import check_max_dets
from sparse_rcnn.platform.names import NAME_RULE, check_name

PIPELINES = ("single_scale", "multiscale", "crop_multiscale")


def _not_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError(f"expected a number, got {str(v).lower()}")
    return v


# A finite float (``allow_inf_nan=False`` below) that is not a boolean; ints such as 1 are fine.
Number = Annotated[float, BeforeValidator(_not_bool)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelSpec(_Section):
    preset: str = Field("r50_fpn_1x", description=f"one of {sorted(PRESETS)}")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="ModelConfig fields replacing the preset's values"
    )
    backbone_weights: str | None = Field(
        None, description="local path of torchvision ImageNet ResNet weights (.pth)"
    )
    init_checkpoint: str | None = Field(
        None, description="start from these detector weights (ours or mmdetection's)"
    )

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str) -> str:
        if v not in PRESETS:
            raise ValueError(f"unknown preset {v!r}; allowed: {sorted(PRESETS)}")
        return v

    @model_validator(mode="after")
    def _valid_overrides(self) -> ModelSpec:
        self.resolve()  # raises with the field name
        return self

    def resolve(self) -> ModelConfig:
        try:
            return PRESETS[self.preset].replace(**_tuples(self.overrides))
        except TypeError as e:
            raise ValueError(f"overrides: {e}") from None


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


class SyntheticSpec(_Section):
    images: StrictInt = Field(200, ge=2, description="number of images (train + val)")
    seed: StrictInt = Field(0, ge=0)
    val_fraction: Number = Field(0.2, gt=0, lt=1)
    min_size: StrictInt = Field(320, ge=64, description="smallest long side, px")
    max_size: StrictInt = Field(480, ge=64, description="largest long side, px")
    difficulty: Literal["standard", "easy"] = Field(
        "standard", description="easy: 3 categories, 1-3 large objects, no crowds or distractors"
    )

    @model_validator(mode="after")
    def _generator_accepts(self) -> SyntheticSpec:
        check_settings(self.images, self.seed, self.val_fraction, self.min_size, self.max_size)
        return self


class DatasetSpec(_Section):
    kind: Literal["coco", "synthetic"] = "coco"
    train_ann: str | None = Field(None, description="COCO annotation JSON (path or URI)")
    train_images: str | None = Field(None, description="folder of training images")
    val_ann: str | None = None
    val_images: str | None = None
    synthetic: SyntheticSpec | None = Field(
        None, description="generator settings; the dataset is written under the state dir"
    )
    pipeline: Literal["single_scale", "multiscale", "crop_multiscale"] = "single_scale"
    input_ratio: Number = Field(
        1.0, gt=0, le=4, description="all input sizes x this ratio (0.4 for the tiny preset)"
    )
    filter_empty_gt: StrictBool = True
    min_size: StrictInt = Field(
        32, ge=0, description="training images with a shorter side are dropped"
    )
    skip_bad_images: StrictBool = Field(
        False, description="skip and count unreadable training images"
    )
    loader_workers: StrictInt = Field(0, ge=0, description="DataLoader worker processes per rank")

    @model_validator(mode="after")
    def _paths_for_kind(self) -> DatasetSpec:
        if self.kind == "coco":
            missing = [
                k for k in ("train_ann", "train_images", "val_ann", "val_images")
                if getattr(self, k) is None
            ]  # fmt: skip
            if missing:
                raise ValueError(f"kind 'coco' needs {missing}")
        elif self.synthetic is None:
            object.__setattr__(self, "synthetic", SyntheticSpec())
        return self


class ScheduleSpec(_Section):
    epochs: StrictInt = Field(12, ge=1)
    lr_steps: list[StrictInt] = Field(
        default_factory=lambda: [8, 11], description="epochs after which lr is multiplied by gamma"
    )
    gamma: Number = Field(0.1, gt=0, le=1)
    warmup_iters: StrictInt = Field(500, ge=0)
    warmup_ratio: Number = Field(0.001, gt=0, le=1)

    @model_validator(mode="after")
    def _steps_in_range(self) -> ScheduleSpec:
        if sorted(self.lr_steps) != self.lr_steps or any(
            not 0 < s < self.epochs for s in self.lr_steps
        ):
            raise ValueError(
                f"lr_steps must be increasing epochs in 1..{self.epochs - 1}, got {self.lr_steps}"
            )
        return self


class OptimizerSpec(_Section):
    lr: Number = Field(2.5e-5, gt=0, description="AdamW learning rate for the total batch 16")
    weight_decay: Number = Field(1e-4, ge=0)
    betas: tuple[Number, Number] = Field((0.9, 0.999), description="AdamW betas, each in [0, 1)")
    eps: Number = Field(1e-8, gt=0)
    clip_grad_norm: Number | None = Field(1.0, gt=0, description="max global L2 norm; null: off")

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {list(v)}")
        return v


class SeedSpec(_Section):
    """Three independent sources of randomness; each defaults to one derived from ``seed``."""

    seed: StrictInt = Field(0, ge=0)
    init: StrictInt | None = Field(None, ge=0, description="model initialisation")
    data_order: StrictInt | None = Field(None, ge=0, description="sampler shuffling")
    augmentation: StrictInt | None = Field(None, ge=0, description="flip/scale/crop draws")

    def resolved(self) -> dict[str, int]:
        """``{"init", "data_order", "augmentation"}``; unset ones are hashed from ``seed`` and the
        source name, so changing ``seed`` changes all three and each stays independent."""
        out = {}
        for name in ("init", "data_order", "augmentation"):
            v = getattr(self, name)
            if v is None:
                digest = hashlib.sha256(f"{self.seed}:{name}".encode()).digest()
                v = int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
            out[name] = v
        return out


class ScalingSpec(_Section):
    num_workers: StrictInt = Field(1, ge=1, description="data-parallel workers (Ray Train)")
    use_gpu: StrictBool = False
    resources_per_worker: dict[str, Number] = Field(
        default_factory=dict, description='e.g. {"CPU": 1, "GPU": 1}; empty: Ray\'s default'
    )

    @field_validator("resources_per_worker")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: x for k, x in v.items() if x < 0}
        if bad:
            raise ValueError(f"resources must be >= 0, got {bad}")
        return v


class MlflowSpec(_Section):
    tracking_uri: str | None = Field(
        None, description="MLflow server URI; null: the embedded SQLite store in the state dir"
    )
    experiment: str = Field(
        "sparse-rcnn", description=f"MLflow experiment; becomes a folder name, so {NAME_RULE}"
    )
    run_name: str | None = Field(None, description=f"MLflow run name (default: name); {NAME_RULE}")
    log_interval: StrictInt = Field(20, ge=1, description="iterations between loss/lr/speed logs")

    @field_validator("experiment")
    @classmethod
    def _experiment(cls, v: str) -> str:
        return check_name("experiment name", v)

    @field_validator("run_name")
    @classmethod
    def _run_name(cls, v: str | None) -> str | None:
        return v if v is None else check_name("run name", v)


class JobSpec(_Section):
    name: str = Field("sparse-rcnn", description=f"the job's name (runs, submissions); {NAME_RULE}")
    model: ModelSpec = Field(default_factory=ModelSpec)
    dataset: DatasetSpec
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    batch_size_per_worker: StrictInt = Field(2, ge=1)
    seeds: SeedSpec = Field(default_factory=SeedSpec)
    deterministic: StrictBool = Field(False, description="use deterministic algorithms (warn only)")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="bf16: the forward under bfloat16 autocast (CUDA; CPU works, slowly), "
        "losses and optimizer in float32. No fp16: it would need loss scaling",
    )
    eval_interval: StrictInt = Field(
        1, ge=0, description="epochs between evaluations; 0: only at end"
    )
    eval_max_dets: tuple[StrictInt, StrictInt, StrictInt] = Field(
        (1, 10, 100),
        description="COCOeval maxDets; mmdetection reports with [100, 300, 1000], which the "
        "300-proposal reference numbers need",
    )
    checkpoint_interval: StrictInt = Field(1, ge=1, description="epochs between checkpoints")
    max_failures: StrictInt = Field(
        1, ge=-1, description="worker-group restarts from the checkpoint"
    )
    scaling: ScalingSpec = Field(default_factory=ScalingSpec)
    storage_path: str | None = Field(
        None, description="checkpoints and Ray run state: local dir or object-store URI"
    )
    mlflow: MlflowSpec = Field(default_factory=MlflowSpec)

    @field_validator("eval_max_dets")
    @classmethod
    def _max_dets(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        return check_max_dets(v)  # the rule the evaluation applies, at load instead of epoch 1

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name("job name", v)

    @property
    def total_batch_size(self) -> int:
        return self.batch_size_per_worker * self.scaling.num_workers

    def model_config_resolved(self) -> ModelConfig:
        return self.model.resolve()

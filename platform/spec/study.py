"""The study spec: a base job, seeds, a grid of settings and a randomness design.

A study runs every (setting, seed) pair as one trial, each a full training run of the base job
with the setting's overrides and the trial's seeds::

    name: tiny-lr
    job: ../tiny_synthetic.yaml     # the base job spec, relative to this file
    set: {schedule.epochs: 4}       # overrides for every trial (optional)
    seeds: 4                        # or an explicit list [0, 1, 2, 3]
    vary:                           # the grid: every combination is one setting
      optimizer.lr: [2.0e-3, 5.0e-3]
    randomness: all                 # or decompose
    effect_size: 0.3                # AP points worth detecting
    alpha: 0.05

Randomness designs:

- ``all`` (default): each trial sets ``seeds.seed`` to its trial seed, so initialisation, data
  order and augmentation all change together (what "run it again with another seed" means).
- ``decompose``: for each source in ``sources`` one varies over the seeds while the others stay
  at the base job's values; ``nondeterminism`` repeats identical seeds, which isolates run-to-run
  noise from kernels and reduction order (the reference's own single-seed setting); ``all``
  (in the default ``sources``) varies every seed, the group comparisons and planning use.

Sequential designs (``design: sequential``): each setting starts with ``seeds.initial`` seeds
and gains ``seeds.step`` more per wave, up to ``seeds.max``; after each wave a comparison with
the baseline is decided (different / equivalent within ``effect_size``) or stays open, with
``spending`` (Lan-DeMets ``obrien_fleming`` or ``pocock``) keeping the error rates, and
``futility: true`` also stopping comparisons that cannot reach "different"
(``stats.sequential``)::

    design: sequential
    seeds: {initial: 3, step: 2, max: 20}   # waves after 3, 5, 7, ..., 19, 20 seeds
    spending: obrien_fleming

Replicate r uses nominal seed r (``wave_seeds``), so waves never repeat a seed; the study
expands to the ``max`` replicates of every setting and the driver runs them wave by wave
(``wave_replicates``). Sequential designs take ``randomness: all``.

Pairing: with ``pairing: replicate`` (default) replicate r of every setting uses the same seeds
(common random numbers), so settings are compared on per-replicate differences, which cancel
the seed effects the settings share; ``pairing: none`` draws distinct seeds per setting.

Every trial's job spec is built and validated at load, so an override that names an unknown key
or an invalid value fails before anything runs, naming the setting and the field.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from sparse_rcnn.platform.names import NAME_RULE, check_name
from sparse_rcnn.platform.spec.job import JobSpec, Number, SeedSpec
from sparse_rcnn.platform.spec.load import (
    SpecError,
    read_yaml,
    resolve_extends,
    set_paths,
    validate,
    yaml_scalar,
)

SOURCES = ("init", "data_order", "augmentation", "nondeterminism")
# A decompose study runs an `all` group too by default: comparisons and planning need a sample
# of the all-sources distribution, which the one-source groups (sharing fixed seeds) are not.
DEFAULT_SOURCES = ("all", *SOURCES)
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
# Fields a study owns: varying them through `vary` or `set` would break the design.
RESERVED_PREFIXES = ("seeds", "name", "mlflow.run_name")


class SequentialSeeds(BaseModel):
    """Seeds per setting of a sequential design: a first wave, then ``step`` more per wave."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial: StrictInt = Field(..., ge=2, description="seeds per setting in the first wave")
    step: StrictInt = Field(..., ge=1, description="seeds each later wave adds")
    max: StrictInt = Field(..., ge=2, description="seeds per setting at most (the last wave)")

    def cumulative(self) -> tuple[int, ...]:
        """Seeds per setting after each wave: initial, initial + step, ..., max."""
        return (*range(self.initial, self.max, self.step), self.max)


def _sequential_seeds(v: dict[str, Any]) -> SequentialSeeds:
    """``seeds: {initial, step, max}`` with one message per problem, naming the key."""
    unknown = sorted(set(v) - {"initial", "step", "max"})
    if unknown:
        raise ValueError(f"seeds.{unknown[0]}: unknown key (a sequential schedule is "
                         "{initial, step, max})")  # fmt: skip
    lows = {"initial": 2, "step": 1, "max": 2}
    for key, low in lows.items():
        x = v.get(key)
        if x is None:
            raise ValueError(f"seeds.{key}: required in {{initial, step, max}}")
        if isinstance(x, bool) or not isinstance(x, int) or x < low:
            raise ValueError(f"seeds.{key} must be an integer >= {low}, got {yaml_scalar(x)}")
    if v["max"] < v["initial"]:
        raise ValueError(f"seeds.max must be >= seeds.initial ({v['initial']}), got {v['max']}")
    return SequentialSeeds(**v)


class StudySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(..., description=f"the study's name, start of its study id; {NAME_RULE}")
    job: str = Field(..., description="base job spec, relative to the study file")
    set: dict[str, Any] = Field(
        default_factory=dict, description="dotted-path overrides applied to every trial"
    )
    design: Literal["fixed", "sequential"] = Field(
        "fixed",
        description="fixed: every seed of every setting runs; sequential: seeds come in waves "
        "until each comparison with the baseline is decided",
    )
    seeds: int | list[int] | SequentialSeeds = Field(
        4,
        description="a count (seeds 0..n-1) or an explicit list; sequential: "
        "{initial, step, max} seeds per setting",
    )
    vary: dict[str, list[Any]] = Field(
        default_factory=dict, description="dotted path -> values; the grid of settings"
    )
    randomness: Literal["all", "decompose"] = "all"
    sources: list[Literal["all", "init", "data_order", "augmentation", "nondeterminism"]] = Field(
        default_factory=lambda: list(DEFAULT_SOURCES),
        description="decompose only: which groups to run (`all` varies every seed)",
    )
    pairing: Literal["replicate", "none"] = Field(
        "replicate",
        description="replicate: replicate r of every setting uses the same seeds (common random "
        "numbers, analysed paired); none: independent seeds per setting (analysed unpaired)",
    )
    spending: Literal["obrien_fleming", "pocock"] = Field(
        "obrien_fleming",
        description="sequential only: Lan-DeMets alpha spending over the waves (O'Brien-Fleming "
        "type: almost nothing early; Pocock type: evenly)",
    )
    futility: StrictBool = Field(
        False,
        description="sequential only: also stop a comparison whose conditional power to be "
        "found different drops below 10 % (non-binding; the error rates hold)",
    )
    metric: Literal["AP", "AP50", "AP75", "APs", "APm", "APl"] = Field(
        "AP", description="the primary metric of the report"
    )
    effect_size: Number = Field(0.3, gt=0, description="AP points a comparison should detect")
    alpha: Number = Field(
        0.05,
        gt=0,
        lt=0.5,
        description="the study's error rate (below 0.5: the report plans "
        "seeds for 80 % power, which needs power above alpha)",
    )
    max_concurrent_trials: StrictInt | None = Field(
        None, ge=1, description="null: as many as the cluster's resources hold"
    )
    max_failures: StrictInt = Field(
        0, ge=0, description="Tune retries of a trial whose driver died (not training failures)"
    )
    bootstrap_replicates: StrictInt = Field(1000, ge=0, description="image bootstrap; 0: skip")
    max_trials: StrictInt = Field(
        1000, ge=1, description="refuse a study that expands to more trials than this"
    )

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds_are_ints(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return _sequential_seeds(v)
        if isinstance(v, SequentialSeeds):
            return v
        items = v if isinstance(v, list) else [v]
        if any(isinstance(s, bool) or not isinstance(s, int) for s in items):
            raise ValueError(
                f"seeds must be a count >= 1 or a list of distinct ints >= 0, got {yaml_scalar(v)}"
            )
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name("study name", v)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: int | list[int] | SequentialSeeds) -> int | list[int] | SequentialSeeds:
        if isinstance(v, SequentialSeeds):
            return v
        if isinstance(v, int):
            if v < 1:
                raise ValueError(f"seeds must be a count >= 1 or a list, got {v}")
        else:
            if not v:
                raise ValueError("seeds: the list is empty")
            if any(s < 0 for s in v):
                raise ValueError(f"seeds must be >= 0, got {v}")
            if len(set(v)) != len(v):
                raise ValueError(f"seeds must be distinct, got {v}")
        return v

    @field_validator("vary")
    @classmethod
    def _vary(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for path, values in v.items():
            _check_path(path, "vary")
            if not values:
                raise ValueError(f"{path}: needs at least one value")
            if len({repr(x) for x in values}) != len(values):
                raise ValueError(f"{path}: values repeat: {values}")
        return v

    @field_validator("set")
    @classmethod
    def _set(cls, v: dict[str, Any]) -> dict[str, Any]:
        for path in v:
            _check_path(path, "set")
        return v

    @model_validator(mode="after")
    def _design(self) -> StudySpec:
        if self.randomness == "decompose" and not self.sources:
            raise ValueError("sources: decompose needs at least one source")
        if len(set(self.sources)) != len(self.sources):
            raise ValueError(f"sources: repeated entries in {self.sources}")
        overlap = set(self.set) & set(self.vary)
        if overlap:
            raise ValueError(f"{sorted(overlap)} appear in both set and vary")
        sequential = isinstance(self.seeds, SequentialSeeds)
        if self.design == "sequential" and not sequential:
            raise ValueError(
                f"seeds: design sequential needs seeds as {{initial, step, max}}, got "
                f"{yaml_scalar(self.seeds)}"
            )
        if self.design == "fixed" and sequential:
            raise ValueError(
                "seeds: {initial, step, max} is for design: sequential; a fixed design takes "
                "a count or a list"
            )
        if self.design == "sequential" and self.randomness != "all":
            raise ValueError(
                "randomness: design sequential takes randomness: all (a decompose design's "
                "one-source groups are not compared with the baseline, so nothing would stop)"
            )
        # A saved spec (study.json) holds every field, so only a value other than the default
        # is refused.
        if self.design == "fixed" and self.spending != "obrien_fleming":
            raise ValueError("spending: only for design: sequential")
        if self.design == "fixed" and self.futility:
            raise ValueError("futility: only for design: sequential")
        if self.design == "sequential" and math.prod(len(v) for v in self.vary.values()) < 2:
            raise ValueError(
                "vary: design sequential compares settings with the baseline (the first); vary "
                "at least one field over two or more values"
            )
        return self

    @property
    def num_seeds(self) -> int:
        """Seeds per setting (a sequential design's most: ``seeds.max``)."""
        if isinstance(self.seeds, SequentialSeeds):
            return self.seeds.max
        return self.seeds if isinstance(self.seeds, int) else len(self.seeds)

    @property
    def seed_list(self) -> list[int]:
        """Nominal seed of each replicate (a sequential design: 0 .. max - 1)."""
        if isinstance(self.seeds, SequentialSeeds):
            return list(range(self.seeds.max))
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


def _check_path(path: str, section: str) -> None:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", path):
        raise ValueError(f"{path!r} is not a dotted key path like optimizer.lr")
    for reserved in RESERVED_PREFIXES:
        if path == reserved or path.startswith(reserved + "."):
            raise ValueError(
                f"{section}.{path}: the study sets {reserved} itself (use seeds/randomness)"
            )


@dataclass(frozen=True)
class Setting:
    index: int
    overrides: dict[str, Any]
    short_keys: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def label(self) -> str:
        """``optimizer.lr=0.002,model.overrides.num_proposals=16``; ``base`` with no overrides."""
        if not self.overrides:
            return "base"
        return ",".join(f"{k}={_short(v)}" for k, v in self.overrides.items())

    @property
    def short_label(self) -> str:
        """The label for people (run names): ``lr=0.002 num_proposals=16``, each key by its
        shortest distinct dotted suffix; empty with no overrides."""
        return " ".join(
            f"{self.short_keys.get(k, k)}={_short(v)}" for k, v in self.overrides.items()
        )


def short_keys(paths: list[str]) -> dict[str, str]:
    """Each dotted path by its shortest suffix that no other path shares (``optimizer.lr`` ->
    ``lr`` unless another path also ends in ``lr``)."""
    out = {}
    for path in paths:
        parts = path.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not any(o != path and (o == suffix or o.endswith("." + suffix)) for o in paths):
                break
        out[path] = suffix
    return out


def trial_run_name(setting: Setting, source: str, seed: int) -> str:
    """A trial's MLflow run name: ``lr=0.005 seed=3``; ``lr=0.005 init seed=3`` when the trial
    varies one randomness source; ``init seed=2`` in a study of one setting."""
    words = [setting.short_label, "" if source == "all" else source, f"seed={seed}"]
    return " ".join(w for w in words if w)


def _short(v: Any) -> str:
    return format(v, "g") if isinstance(v, float) else str(v)


@dataclass(frozen=True)
class TrialPlan:
    """One trial: its setting, which randomness source it varies and the seeds it uses."""

    key: str  # stable id within the study: s<setting>-<source>-r<replicate>
    setting: int
    setting_label: str
    overrides: dict[str, Any]
    source: str  # "all" or one of SOURCES
    replicate: int
    seed: int  # the trial seed (for nondeterminism: the replicate's nominal seed)
    seeds: dict[str, int]  # resolved init / data_order / augmentation
    job: dict[str, Any] = field(repr=False)  # the trial's full job spec (JSON-able)
    run_name: str = ""  # the MLflow run name: setting and seed (``trial_run_name``)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Study:
    spec: StudySpec
    path: Path | None
    base_job: dict[str, Any]  # the base job after extends and `set`
    settings: list[Setting]
    trials: list[TrialPlan]

    @property
    def base_spec(self) -> JobSpec:
        return JobSpec.model_validate(self.base_job)


def _settings(spec: StudySpec) -> list[Setting]:
    keys = list(spec.vary)
    combos = itertools.product(*(spec.vary[k] for k in keys)) if keys else [()]
    short = short_keys(keys)
    return [Setting(i, dict(zip(keys, c, strict=True)), short) for i, c in enumerate(combos)]


def setting_seed(spec: StudySpec, setting: int, seed: int) -> int:
    """The trial seed of replicate seed ``seed`` in setting ``setting``: the seed itself when
    settings are paired by replicate (or for setting 0), else a distinct seed hashed from
    (seed, setting) so that no two settings share any seed."""
    if spec.pairing == "replicate" or setting == 0:
        return seed
    digest = hashlib.sha256(f"{seed}:setting{setting}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def wave_sizes(spec: StudySpec) -> tuple[int, ...]:
    """Seeds per setting after each wave (a fixed design is one wave of all its seeds)."""
    if isinstance(spec.seeds, SequentialSeeds):
        return spec.seeds.cumulative()
    return (spec.num_seeds,)


def wave_replicates(spec: StudySpec, wave: int) -> range:
    """The replicates (``TrialPlan.replicate``, from 0) that wave ``wave`` (from 1) runs."""
    sizes = wave_sizes(spec)
    if isinstance(wave, bool) or not isinstance(wave, int) or not 1 <= wave <= len(sizes):
        raise SpecError(f"wave: study {spec.name} has waves 1..{len(sizes)}, got {wave!r}")
    return range(sizes[wave - 2] if wave > 1 else 0, sizes[wave - 1])


def wave_of(spec: StudySpec, replicate: int) -> int:
    """The wave (from 1) that runs replicate ``replicate`` (from 0)."""
    sizes = wave_sizes(spec)
    if not 0 <= replicate < sizes[-1]:
        raise SpecError(f"replicate: study {spec.name} has replicates 0..{sizes[-1] - 1}")
    return next(k for k, n in enumerate(sizes, start=1) if replicate < n)


def wave_seeds(spec: StudySpec, setting: int, wave: int) -> list[int]:
    """The trial seeds of setting ``setting`` in wave ``wave``: replicate r's nominal seed
    (``seed_list[r]``, r in ``wave_replicates``) through ``setting_seed``. Deterministic, and
    no seed repeats across waves; paired by replicate, every setting gets the same ones."""
    nominal = spec.seed_list
    return [setting_seed(spec, setting, nominal[r]) for r in wave_replicates(spec, wave)]


def _trial_seeds(
    spec: StudySpec, base_seeds: dict[str, int], source: str, seed: int
) -> dict[str, int]:
    if source == "all":
        return SeedSpec(seed=seed).resolved()
    if source == "nondeterminism":
        return dict(base_seeds)
    return {**base_seeds, source: SeedSpec(seed=seed).resolved()[source]}


def build_study(spec: StudySpec, base_job: dict[str, Any], path: Path | None = None) -> Study:
    """Expand ``spec`` over ``base_job`` (a job mapping, extends already merged) into validated
    trials. Raises :class:`SpecError` naming the setting and the field on an invalid trial."""
    source_name = str(path) if path else f"study {spec.name}"
    base = set_paths(base_job, spec.set, source=f"{source_name}: set")
    base_spec = validate(JobSpec, base, f"{source_name}: base job with `set`")
    base_seeds = base_spec.seeds.resolved()
    sources = ["all"] if spec.randomness == "all" else list(spec.sources)
    _check_trial_count(spec, len(sources), source_name)
    trials = []
    seen: dict[str, Setting] = {}  # the resolved job of each setting -> the setting
    labels: dict[str, Setting] = {}
    for setting in _settings(spec):
        data = set_paths(base, setting.overrides, source=f"{source_name}: vary")
        job_spec = validate(
            JobSpec, data, f"{source_name}: setting {setting.index} ({setting.label})"
        )
        _check_distinct(setting, job_spec, seen, labels, source_name)
        for source in sources:
            for rep, nominal in enumerate(spec.seed_list):
                seed = setting_seed(spec, setting.index, nominal)
                seeds = _trial_seeds(spec, base_seeds, source, seed)
                key = f"s{setting.index}-{source}-r{rep}"
                job = dict(data)
                job["seeds"] = {"seed": seed, **seeds}
                job["name"] = f"{spec.name}-{key}"
                job = JobSpec.model_validate(job).model_dump(mode="json")
                trials.append(
                    TrialPlan(
                        key,
                        setting.index,
                        setting.label,
                        setting.overrides,
                        source,
                        rep,
                        seed,
                        seeds,
                        job,
                        trial_run_name(setting, source, seed),
                    )
                )
    return Study(spec, path, base, _settings(spec), trials)


def _check_trial_count(spec: StudySpec, runs_per_setting: int, source_name: str) -> None:
    """Refuse before expanding: a typo in ``seeds`` or ``vary`` must not plan a million runs."""
    n_settings = math.prod(len(v) for v in spec.vary.values())
    n = n_settings * runs_per_setting * spec.num_seeds
    if n > spec.max_trials:
        raise SpecError(
            f"{source_name}: the study expands to {n} trials ({n_settings} "
            f"setting{'s' if n_settings != 1 else ''} x "
            f"{runs_per_setting * spec.num_seeds} runs), more than max_trials {spec.max_trials}; "
            "shrink vary or seeds, or raise max_trials"
        )


def _check_distinct(
    setting: Setting,
    job: JobSpec,
    seen: dict[str, Setting],
    labels: dict[str, Setting],
    source_name: str,
) -> None:
    """Two settings must differ as validated jobs (``1`` and ``1.0`` for a float field do not)
    and in their labels (the report tells settings apart by label)."""
    key = json.dumps(job.model_dump(mode="json"), sort_keys=True)
    other = seen.setdefault(key, setting)
    if other is not setting:
        raise SpecError(
            f"{source_name}: vary: settings {other.index} ({_raw(other)}) and {setting.index} "
            f"({_raw(setting)}) are the same job once values are read as their field types; "
            "remove the repeated value"
        )
    other = labels.setdefault(setting.label, setting)
    if other is not setting:
        raise SpecError(
            f"{source_name}: vary: settings {other.index} ({_raw(other)}) and {setting.index} "
            f"({_raw(setting)}) have the same label {setting.label!r}; use values that differ "
            "in their first 6 significant digits"
        )


def _raw(setting: Setting) -> str:
    """The setting's overrides as written in the spec (``optimizer.lr=1.0``)."""
    return ",".join(f"{k}={yaml_scalar(v)}" for k, v in setting.overrides.items()) or "base"


def load_study(path: str | Path) -> Study:
    """Read and validate a study spec and every trial it expands to."""
    path = Path(path)
    data = read_yaml(path)
    spec = validate(StudySpec, data, str(path))
    job_path = (path.parent / spec.job).resolve()
    if not job_path.is_file():
        raise SpecError(f"{path}: job: base job spec not found: {job_path}")
    return build_study(spec, resolve_extends(job_path), path)


def study_from_dict(data: dict[str, Any], base_job: dict[str, Any]) -> Study:
    """A study from mappings (the resolved copy a study folder keeps, for resume and report)."""
    return build_study(validate(StudySpec, data, "study"), base_job)

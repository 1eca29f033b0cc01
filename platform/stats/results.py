"""Typed results of an analysis (``analysis.analyze``): per setting, per comparison, per
variance component, and planning. ``render`` serialises them (``Analysis.to_json``) and words
them; the formulas are in ``analysis``, ``comparison`` and ``planning``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sparse_rcnn.platform.stats.components import Decomposition, ValidationSetShare
from sparse_rcnn.platform.stats.summary import Interval, SeedSummary
from sparse_rcnn.platform.stats.table import Run

if TYPE_CHECKING:  # sequential_table imports comparison, which imports this module
    from sparse_rcnn.platform.stats.sequential_table import SequentialAnalysis


@dataclass(frozen=True)
class SettingResult:
    """One setting over its main group's runs (``summary``), with what the runs were."""

    setting: str
    group: str  # "all", or "(none)" for a decompose design without an all group
    runs: tuple[str, ...]
    summary: SeedSummary
    validation_set: ValidationSetShare | None = None


@dataclass(frozen=True)
class NewImages:
    """A difference for new images from the same distribution (seed + image-sampling noise).

    ``image_se``: bootstrap SE of the seed-averaged difference over paired image draws;
    ``se = sqrt(seed_se^2 + image_se^2)``; ``ci`` on the Welch-Satterthwaite df of the seed
    part (the bootstrap part counts as known).
    """

    diff: float
    seed_se: float
    image_se: float
    se: float
    df: float
    ci: Interval | None


@dataclass(frozen=True)
class ComparisonResult:
    """Setting ``a`` against the baseline ``b`` (a minus b); formulas in the module doc."""

    a: str
    b: str
    design: str  # "paired" or "unpaired"
    n_a: int
    n_b: int
    n_pairs: int
    diff: float
    se: float
    df: float
    ci: Interval | None
    ci_simultaneous: Interval | None
    p: float  # the primary test's p (paired t or Welch)
    p_adjusted: float  # Holm over the m comparisons (= p when m = 1)
    p_welch: float
    p_mann_whitney: float
    p_wilcoxon: float
    p_sign_flip: float
    p_equivalence: float
    p_superiority: float
    p_superiority_ci: Interval | None
    hedges_g: float
    verdict: str  # different | equivalent | undecided
    still_includes: float  # max |effect| inside ci_simultaneous
    mde_80: float
    seeds_to_decide: int | None
    correlation: float
    correlation_ci: Interval | None
    sigma_diff: float
    seeds_paired_80: int | None
    seeds_unpaired_80: int | None
    notes: tuple[str, ...]
    new_images: NewImages | None = None


@dataclass(frozen=True)
class ComponentResult:
    """One variance component of one setting (metric units squared), truncated at 0."""

    setting: str
    source: str
    n: int
    variance: float
    ci: Interval | None
    method: str
    note: str | None


@dataclass(frozen=True)
class PowerResult:
    """Planning from the seed-to-seed sigma (pooled over settings' main groups).

    ``sigma`` on ``df`` degrees of freedom with its two-sided CI; ``sigma_upper`` its one-sided
    80 % upper bound. Seeds per setting (unpaired two-sample t at alpha, two-sided) at the point
    estimate (``seeds_per_arm_80/90``), at ``sigma_upper`` and at the CI top; ``mde_80`` at the
    smallest current n. ``sigma_source`` says where sigma came from; ``sigma_diff`` and
    ``seeds_paired_80`` plan a paired design from the pooled std of per-replicate differences.
    """

    sigma: float
    df: int
    sigma_ci: Interval | None
    sigma_upper: float
    sigma_source: str
    n_current: int
    seeds_per_arm_80: int | None
    seeds_per_arm_90: int | None
    seeds_per_arm_80_upper: int | None
    seeds_per_arm_80_ci_high: int | None
    mde_80: float
    sigma_diff: float
    sigma_diff_df: int
    seeds_paired_80: int | None


@dataclass(frozen=True)
class Analysis:
    """Everything ``render`` prints; ``to_json`` is the documented JSON."""

    metric: str
    unit: str
    alpha: float
    effect_size: float
    design: str  # "all" or "decompose"
    pairing: str  # "paired" or "unpaired"
    baseline: str | None
    runs: tuple[Run, ...]
    settings: tuple[SettingResult, ...]
    comparisons: tuple[ComparisonResult, ...]
    components: tuple[ComponentResult, ...]
    decompositions: Mapping[str, Decomposition]
    power: PowerResult
    failed: tuple[Run, ...]
    image_se: Mapping[str, float] = field(default_factory=dict)
    image_ci: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    run_word: str = "run"  # "trial" in a study report
    sequential: SequentialAnalysis | None = None  # runs with waves: the wave-by-wave verdicts

    @property
    def confidence(self) -> float:
        return 1.0 - self.alpha

    @property
    def m(self) -> int:
        return len(self.comparisons)

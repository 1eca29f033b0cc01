"""Image bootstrap of the COCO box metrics: percentile CIs and paired comparisons.

A replicate draws N images with replacement from the N images of the ground truth (all of them,
including images without annotations: detections there are false positives). An image drawn k
times counts k times, exactly as if its annotations and detections were copied k times under new
image ids; it is never de-duplicated (a set of the drawn ids keeps only ~63% of the images and
gives CIs ~24% too narrow). Matching is done once; each replicate only re-weights the images
(:class:`~.coco_eval.CocoAccumulator`).

Replicates come from ``numpy.random.default_rng(seed)`` (PCG64): replicate ``b`` is the counts of
``rng.integers(0, N, size=N)``, drawn for b = 0, 1, ... in order, so a seed and N fix the
replicates, and two detection sets on the same ground truth can be paired after the fact.

Exactness: a replicate's metrics equal pycocotools on the physically copied dataset when copies
get consecutive new ids in the original image order. The one exception is two detections of the
same image and category with exactly equal scores: pycocotools then interleaves their copies,
which re-weighting does not (such ties are rare with float scores, and pycocotools' own result
then depends on arbitrary order).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparse_rcnn.platform.errors import InputError
from sparse_rcnn.platform.evaluation.coco_eval import (
    COCO_MAX_DETS,
    CocoAccumulator,
    metric_names,
    prepare,
)
from sparse_rcnn.platform.evaluation.detections import Detections
from sparse_rcnn.platform.evaluation.ground_truth import GroundTruth


def bootstrap_weights(num_images: int, num_replicates: int, seed: int) -> np.ndarray:
    """(B, N) int64 multinomial image counts, each row summing to N (see module docstring)."""
    if num_images <= 0:
        raise InputError("the ground truth has no images to resample")
    if num_replicates <= 0:
        raise ValueError(f"num_replicates must be positive, got {num_replicates}")
    rng = np.random.default_rng(seed)
    out = np.empty((num_replicates, num_images), np.int64)
    rows = max(1, (1 << 22) // num_images)  # draw in blocks to bound memory
    for s in range(0, num_replicates, rows):
        n = min(rows, num_replicates - s)
        draws = rng.integers(0, num_images, size=(n, num_images))
        flat = (draws + np.arange(n)[:, None] * num_images).ravel()
        out[s : s + n] = np.bincount(flat, minlength=n * num_images).reshape(n, num_images)
    return out


def percentile_ci(replicates: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 of (B, M) ``replicates``, ignoring NaN replicates."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    q = [50.0 * (1.0 - confidence), 50.0 * (1.0 + confidence)]
    finite = np.isfinite(replicates).any(axis=0)
    lo = np.full(replicates.shape[1], np.nan)
    hi = np.full(replicates.shape[1], np.nan)
    if finite.any():
        lo[finite], hi[finite] = np.nanpercentile(replicates[:, finite], q, axis=0)
    return lo, hi


@dataclass(frozen=True)
class BootstrapResult:
    """Bootstrap of one detection set.

    Attributes:
        names: the 12 metric names. point: (12,) metrics on the full data (NaN where pycocotools
        gives -1). replicates: (B, 12) per replicate, NaN where no category qualifies (e.g. no
        small object drawn). ci_low, ci_high: (12,) percentile interval. std_error: (12,).
        bias: (12,) mean replicate minus ``point``. AP is a convex-ish function of the image
        mix, so replicates run above the point estimate (more so on small sets, where the
        percentile interval can miss the point altogether); ``bias`` shows by how much.
        category_ids: (K,). category_point: (K,) per-category AP. category_ci_low/high: (K,).
    """

    names: tuple[str, ...]
    point: np.ndarray
    replicates: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    std_error: np.ndarray
    bias: np.ndarray
    category_ids: np.ndarray
    category_point: np.ndarray
    category_ci_low: np.ndarray
    category_ci_high: np.ndarray
    confidence: float
    seed: int

    @property
    def num_replicates(self) -> int:
        return len(self.replicates)


@dataclass(frozen=True)
class PairedBootstrapResult:
    """Paired bootstrap of A - B on the same replicates.

    Attributes:
        names: the 12 metric names. point_a, point_b: (12,) metrics on the full data.
        diff: (12,) ``point_a - point_b``. replicates: (B, 12) per-replicate differences.
        ci_low, ci_high: (12,) percentile interval of the difference. std_error: (12,).
        prob_positive: (12,) fraction of replicates with difference > 0 (among finite ones).
    """

    names: tuple[str, ...]
    point_a: np.ndarray
    point_b: np.ndarray
    diff: np.ndarray
    replicates: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    std_error: np.ndarray
    prob_positive: np.ndarray
    confidence: float
    seed: int

    @property
    def num_replicates(self) -> int:
        return len(self.replicates)


def bootstrap(
    ground_truth: GroundTruth | dict | str | Path,
    detections: Detections,
    num_replicates: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    max_dets: tuple[int, int, int] = COCO_MAX_DETS,
) -> BootstrapResult:
    """Image-bootstrap percentile CIs of the 12 COCO box metrics and per-category AP.

    ``detections`` are COCO results (xywh, absolute pixels); see :func:`~.coco_eval.evaluate`.
    """
    acc = prepare(ground_truth, detections, max_dets)[1]
    return bootstrap_prepared(acc, num_replicates, seed, confidence)


def bootstrap_prepared(
    acc: CocoAccumulator, num_replicates: int = 1000, seed: int = 0, confidence: float = 0.95
) -> BootstrapResult:
    """:func:`bootstrap` on an accumulator from :func:`~.coco_eval.prepare`."""
    weights = bootstrap_weights(acc.num_images, num_replicates, seed)
    point, cat_point = acc.metrics(np.ones((1, acc.num_images)))
    reps, cat_reps = acc.metrics(weights)
    lo, hi = percentile_ci(reps, confidence)
    cat_lo, cat_hi = percentile_ci(cat_reps, confidence)
    return BootstrapResult(
        names=metric_names(acc.max_dets),
        point=point[0],
        replicates=reps,
        ci_low=lo,
        ci_high=hi,
        std_error=_std(reps),
        bias=_nanmean(reps) - point[0],
        category_ids=acc.category_ids,
        category_point=cat_point[0],
        category_ci_low=cat_lo,
        category_ci_high=cat_hi,
        confidence=confidence,
        seed=seed,
    )


def paired_bootstrap(
    ground_truth: GroundTruth | dict | str | Path,
    detections_a: Detections,
    detections_b: Detections,
    num_replicates: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    max_dets: tuple[int, int, int] = COCO_MAX_DETS,
) -> PairedBootstrapResult:
    """Bootstrap of metric(A) - metric(B), both evaluated on the same image replicates."""
    gt, acc_a = prepare(ground_truth, detections_a, max_dets)
    acc_b = prepare(gt, detections_b, max_dets)[1]
    return paired_bootstrap_prepared(acc_a, acc_b, num_replicates, seed, confidence)


def paired_bootstrap_prepared(
    acc_a: CocoAccumulator,
    acc_b: CocoAccumulator,
    num_replicates: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedBootstrapResult:
    """:func:`paired_bootstrap` on two accumulators of the same ground truth and maxDets."""
    if acc_a.num_images != acc_b.num_images or acc_a.max_dets != acc_b.max_dets:
        raise ValueError("paired bootstrap needs both detection sets on the same ground truth")
    weights = bootstrap_weights(acc_a.num_images, num_replicates, seed)
    ones = np.ones((1, acc_a.num_images))
    point_a, point_b = acc_a.metrics(ones)[0][0], acc_b.metrics(ones)[0][0]
    reps = acc_a.metrics(weights)[0] - acc_b.metrics(weights)[0]
    lo, hi = percentile_ci(reps, confidence)
    finite = np.isfinite(reps)
    with np.errstate(invalid="ignore"):
        prob = np.where(finite.any(0), (reps > 0).sum(0) / np.maximum(finite.sum(0), 1), np.nan)
    return PairedBootstrapResult(
        names=metric_names(acc_a.max_dets),
        point_a=point_a,
        point_b=point_b,
        diff=point_a - point_b,
        replicates=reps,
        ci_low=lo,
        ci_high=hi,
        std_error=_std(reps),
        prob_positive=prob,
        confidence=confidence,
        seed=seed,
    )


def _nanmean(replicates: np.ndarray) -> np.ndarray:
    """(M,) mean over replicates ignoring NaN; NaN where all are NaN."""
    finite = np.isfinite(replicates)
    total = np.where(finite, replicates, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore"):
        return np.where(finite.any(axis=0), total / np.maximum(finite.sum(axis=0), 1), np.nan)


def _std(replicates: np.ndarray) -> np.ndarray:
    """(M,) standard deviation over replicates (ddof=1), ignoring NaN; NaN if < 2 finite."""
    finite = np.isfinite(replicates)
    out = np.full(replicates.shape[1], np.nan)
    ok = finite.sum(0) >= 2
    if ok.any():
        out[ok] = np.nanstd(replicates[:, ok], axis=0, ddof=1)
    return out

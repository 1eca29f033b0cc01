"""COCO box evaluation: the 12 COCOeval(bbox) summary metrics and per-category AP.

``evaluate(ground_truth, detections)`` equals pycocotools' ``COCOeval(gt, dt, "bbox")``
``evaluate(); accumulate(); summarize()`` within 1e-9 (``stats`` in the same order, -1 where
pycocotools gives -1), including crowd regions, images without ground truth or detections,
categories without ground truth, more than maxDets detections and tied scores.

``max_dets`` is COCOeval's ``params.maxDets``: (1, 10, 100) by default, (100, 300, 1000) for
mmdetection's setting. pycocotools computes ``AP`` (stats[0]) at maxDets=100 whatever the list
says (``_summarize``'s default), and AP50 ... APl, the last AR and ARs/m/l at ``max_dets[2]``;
this module does the same, so ``100`` must be one of the three. AR names follow ``max_dets``
(``AR100, AR300, AR1000`` for mmdetection's).

The work splits into per-image matching (:mod:`.matching`, done once) and accumulation over
image weights (:mod:`.accumulate`); :class:`CocoAccumulator` gives the metrics for any batch of
weights, which is how the bootstrap (:mod:`.bootstrap`) reuses one matching for all replicates.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np

from sparse_rcnn.platform.evaluation.accumulate import (
    PrecisionCurves,
    RecallCounts,
    augment_weights,
    expand_tied_runs,
)
from sparse_rcnn.platform.evaluation.detections import Detections
from sparse_rcnn.platform.evaluation.forked import usable_cpus
from sparse_rcnn.platform.evaluation.ground_truth import GroundTruth, load_ground_truth
from sparse_rcnn.platform.evaluation.matching import (
    AREA_RANGES,
    IOU_THRESHOLDS,
    Matches,
    match_detections,
    match_in_parts,
)
from sparse_rcnn.platform.evaluation.max_dets import (  # noqa: F401  (re-exported)
    COCO_MAX_DETS,
    MMDET_MAX_DETS,
    check_max_dets,
)

T = TypeVar("T")
_NUM_RECALL_THRESHOLDS = 101
# The area range (index into AREA_RANGES) of each of the 12 metrics, in stats order.
_METRIC_AREA = (0, 0, 0, 1, 2, 3, 0, 0, 0, 1, 2, 3)
# Replicates per batch: ~4 MiB per float64 working array keeps them in cache; measured ~25%
# faster per replicate than 32 MiB arrays on the val2017-sized bench case.
_ELEMENTS_PER_BATCH = 1 << 19


POINTS = 100.0  # COCO fractions -> AP points


def metric_names(max_dets: tuple[int, int, int] = COCO_MAX_DETS) -> tuple[str, ...]:
    """The 12 COCOeval(bbox) stats names in ``stats`` order; AR names follow ``max_dets``."""
    m0, m1, m2 = max_dets
    return (
        "AP",
        "AP50",
        "AP75",
        "APs",
        "APm",
        "APl",
        f"AR{m0}",
        f"AR{m1}",
        f"AR{m2}",
        "ARs",
        "ARm",
        "ARl",
    )


@dataclass(frozen=True)
class CocoEvalResult:
    """Output of :func:`evaluate`.

    Attributes:
        stats: the 12 metrics by name, in COCOeval ``stats`` order (fractions, not percent;
            -1.0 where no category qualifies, as in pycocotools).
        per_category_ap: COCO category id -> AP at IoU 0.50:0.95, area all, maxDets 100
            (NaN for categories without non-crowd ground truth); their mean is ``stats["AP"]``.
        max_dets: the ``maxDets`` used.
        num_images: images evaluated (all images of the ground truth).
        num_detections_ignored: detections on categories the ground truth does not list.
    """

    stats: dict[str, float]
    per_category_ap: dict[int, float]
    max_dets: tuple[int, int, int]
    num_images: int
    num_detections_ignored: int

    def stats_array(self) -> np.ndarray:
        """(12,) float64 ``stats`` in COCOeval order."""
        return np.array(list(self.stats.values()))

    def points(self) -> dict[str, float]:
        """The metrics that exist for this evaluation, in AP points (x 100), the unit papers,
        the report and MLflow use. COCO's -1 ("no object of this size") is left out, not
        scaled: a metric that does not exist is not a value."""
        return {k: POINTS * v for k, v in self.stats.items() if v >= 0}


class CocoAccumulator:
    """The 12 metrics and per-category AP for any batch of image weights, from one matching.

    Args:
        matches: per-image matching of detections, made with ``max_det = max_dets[2]``.
        max_dets: COCOeval ``maxDets`` (see :func:`check_max_dets`).
        threads: threads that build the precision curves and recall counts; default: the CPUs
            this process may use.
    """

    def __init__(
        self, matches: Matches, max_dets: tuple[int, int, int], threads: int | None = None
    ):
        self.max_dets = check_max_dets(max_dets)
        self._threads = threads or usable_cpus()
        m0, m1, m2 = self.max_dets
        self._m = matches
        self.matches = matches  # read-only use: precision-recall curves (pr_curves.py)
        self.num_categories = len(matches.category_ids)
        self.num_images = n_img = matches.num_gt.shape[1]
        self.num_dropped = matches.dropped
        self.category_ids = matches.category_ids
        self.num_gt = matches.num_gt  # (A * K, N) counts
        self._t50 = int(np.where(IOU_THRESHOLDS == 0.5)[0][0])
        self._t75 = int(np.where(IOU_THRESHOLDS == 0.75)[0][0])
        # Images with equal scores inside one (image, category): see expand_tied_runs.
        m = matches
        same = (m.category[1:] == m.category[:-1]) & (m.score[1:] == m.score[:-1])
        self._tied_images = np.unique(m.image[1:][same & (m.image[1:] == m.image[:-1])])
        self._copies = 1

        def recall(area: int, max_det: int) -> RecallCounts:
            cand = m.candidates
            ck = m.rank[cand] < max_det
            return RecallCounts.build(
                m.candidate_status[area][:, ck], m.image[cand[ck]], m.category[cand[ck]],
                n_img, self.num_categories,
            )  # fmt: skip

        recalls = [partial(recall, 0, md) for md in (m0, m1, m2)]
        recalls += [partial(recall, a, m2) for a in (1, 2, 3)]
        curves = self._curve_jobs()
        built = _call_all(curves + recalls, self._threads)
        self._set_curves(built[: len(curves)])
        self._recall = built[len(curves) :]

    def _build_curves(self) -> None:
        self._set_curves(_call_all(self._curve_jobs(), self._threads))

    def _curve_jobs(self) -> list[Callable[[], PrecisionCurves]]:
        """Builders of the precision curves: AP at maxDets=100 (all IoU thresholds), APs/m/l
        at ``max_dets[2]``, and AP50/AP75 at ``max_dets[2]`` where that is not 100, with tied
        runs spelled out ``_copies`` times."""
        m, m2 = self._m, self.max_dets[2]
        n_cols = self.num_images + (
            len(self._tied_images) * self._copies if self._copies > 1 else 0
        )

        def curves(area: int, max_det: int, thresholds: np.ndarray) -> PrecisionCurves:
            status = m.candidate_status[area][thresholds]
            if max_det >= m2 and self._copies == 1:  # the matching already cut at m2
                return PrecisionCurves.build(
                    m.unmatched[area], m.candidates, status, m.image, m.category,
                    n_cols, self.num_categories,
                )  # fmt: skip
            pos = np.flatnonzero(m.rank < max_det)
            order, column = expand_tied_runs(
                m.category[pos], m.score[pos], m.image[pos], self.num_images,
                self._tied_images, self._copies,
            )  # fmt: skip
            pos = pos[order]
            cand_of = np.full(len(m.rank), -1)
            cand_of[m.candidates] = np.arange(len(m.candidates))
            cand = cand_of[pos]
            is_cand = cand >= 0
            return PrecisionCurves.build(
                m.unmatched[area][pos], np.flatnonzero(is_cand), status[:, cand[is_cand]],
                column, m.category[pos], n_cols, self.num_categories,
            )  # fmt: skip

        all_t = np.arange(len(IOU_THRESHOLDS))
        jobs = [partial(curves, 0, 100, all_t)] + [partial(curves, a, m2, all_t) for a in (1, 2, 3)]
        if m2 != 100:
            jobs.append(partial(curves, 0, m2, np.array([self._t50, self._t75])))
        return jobs

    def _set_curves(self, built: list[PrecisionCurves]) -> None:
        self._ap, self._ap_area = built[0], built[1:4]
        self._ap5075 = built[4] if len(built) > 4 else None

    def metrics(
        self, weights: np.ndarray, threads: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Metrics for each row of image weights.

        Args:
            weights: (B, N) non-negative integer image weights (N = images of the ground truth,
                in sorted-id order); all ones is the plain evaluation.
            threads: replicate batches evaluated in parallel (numpy releases the GIL in the
                array work); default: the CPUs this process may use.

        Returns:
            stats: (B, 12) in :func:`metric_names` order, NaN where no category qualifies.
            per_category_ap: (B, K) AP at area all, maxDets 100; NaN without ground truth.
        """
        weights = np.asarray(weights, dtype=np.float64)
        if weights.ndim != 2 or weights.shape[1] != self.num_images:
            raise ValueError(f"weights must have shape (B, {self.num_images}), got {weights.shape}")
        if weights.size and (weights.min() < 0 or (weights != np.round(weights)).any()):
            raise ValueError("image weights must be non-negative integers")
        if len(self._tied_images) and weights.size:
            need = int(weights[:, self._tied_images].max())
            if need > self._copies:
                self._copies = need
                self._build_curves()
        curves = [self._ap, *self._ap_area] + ([self._ap5075] if self._ap5075 else [])
        step = max(1, _ELEMENTS_PER_BATCH // max(1, max(c.size for c in curves)))
        batches = [weights[s : s + step] for s in range(0, len(weights), step)]
        parts = _call_all([partial(self._metrics_batch, b) for b in batches],
                          threads or usable_cpus())  # fmt: skip
        if not parts:
            return np.zeros((0, 12)), np.zeros((0, self.num_categories))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def per_category(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each metric per category, before the mean over categories that gives the metric.

        Args:
            weights: (B, N) image weights, as in :meth:`metrics` (one batch, one thread).

        Returns:
            values: (B, 12, K) in :func:`metric_names` order (NaN or any value where not valid).
            valid: (B, 12, K) bool: the category has ground truth in the metric's area range,
                so it enters the metric's mean.
        """
        return self._per_category_batch(np.asarray(weights, dtype=np.float64))

    def _metrics_batch(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values, valid = self._per_category_batch(w)
        return mean_over_valid(values, valid), np.where(valid[:, 0], values[:, 0], np.nan)

    def _per_category_batch(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        npig = self.num_gt.weighted(w)  # (B, A * K), exact integers
        npig = npig.reshape(len(w), len(AREA_RANGES), self.num_categories).transpose(1, 0, 2)
        w_cols = augment_weights(w.astype(np.int32), self._tied_images, self._copies)
        values = np.empty((len(w), 12, self.num_categories))
        ap_sums = self._ap.ap_sums(w_cols, npig[0]) / _NUM_RECALL_THRESHOLDS  # (B, T, K)
        values[:, 0] = ap_sums.mean(axis=1)
        if self._ap5075 is None:
            values[:, 1:3] = ap_sums[:, [self._t50, self._t75]]
        else:
            values[:, 1:3] = self._ap5075.ap_sums(w_cols, npig[0]) / _NUM_RECALL_THRESHOLDS
        for i, (curves, a) in enumerate(zip(self._ap_area, (1, 2, 3), strict=True)):
            values[:, 3 + i] = (curves.ap_sums(w_cols, npig[a]) / _NUM_RECALL_THRESHOLDS).mean(1)
        for i, (counts, a) in enumerate(zip(self._recall, (0, 0, 0, 1, 2, 3), strict=True)):
            with np.errstate(divide="ignore", invalid="ignore"):
                recall = counts.true_positives(w) / npig[a][:, None, :]  # (B, T, K)
            values[:, 6 + i] = recall.mean(axis=1)
        valid = (npig > 0)[list(_METRIC_AREA)].transpose(1, 0, 2)  # (B, 12, K)
        return values, valid


def _call_all(jobs: list[Callable[[], T]], threads: int) -> list[T]:
    """``[job() for job in jobs]`` on up to ``threads`` threads. The jobs are numpy
    work on large arrays (sorts, searches, cumulative sums), which releases the GIL: building
    the accumulator of the val2017-sized bench case took 0.068 s on one thread, 0.041 s on
    two (medians of 10)."""
    threads = min(len(jobs), threads)
    if threads <= 1:
        return [job() for job in jobs]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda job: job(), jobs))


def mean_over_valid(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(...) mean of (..., K) ``values`` over categories where ``valid``; NaN if none is."""
    count = valid.sum(axis=-1)
    total = np.where(valid, values, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def prepare(
    ground_truth: GroundTruth | dict | str | Path,
    detections: Detections,
    max_dets: tuple[int, int, int] = COCO_MAX_DETS,
    workers: int = 1,
) -> tuple[GroundTruth, CocoAccumulator]:
    """Load the ground truth, match ``detections`` once, and return the accumulator.

    ``workers > 1`` matches in that many forked processes (see :func:`.match_detections`).
    """
    gt = load_ground_truth(ground_truth)
    md = check_max_dets(max_dets)
    return gt, CocoAccumulator(match_detections(gt, detections, md[2], workers), md)


def evaluate(
    ground_truth: GroundTruth | dict | str | Path,
    detections: Detections,
    max_dets: tuple[int, int, int] = COCO_MAX_DETS,
    workers: int = 1,
) -> CocoEvalResult:
    """COCOeval(bbox) summary metrics of ``detections`` against ``ground_truth``.

    Args:
        ground_truth: a COCO instances dict, a path to its JSON, or a :class:`GroundTruth`.
        detections: boxes ``x, y, w, h`` in absolute pixels of the original images; every
            image id must be in the ground truth (detections on unlisted categories are
            ignored, as in pycocotools).
        max_dets: COCOeval ``maxDets``; :data:`MMDET_MAX_DETS` for mmdetection's numbers.
        workers: processes; ``> 1`` matches and accumulates ranges of categories in forked
            children (:func:`.match_in_parts`: opt in only from a process without threads of
            its own). Every metric is a mean over categories of per-category values, so the
            result is the same.
    """
    gt = load_ground_truth(ground_truth)
    md = check_max_dets(max_dets)
    if workers <= 1:
        return summarize(prepare(gt, detections, md)[1])

    def per_category(matches: Matches) -> tuple[np.ndarray, np.ndarray]:
        acc = CocoAccumulator(matches, md, threads=1)  # one thread per process
        return acc.per_category(np.ones((1, acc.num_images)))

    split = match_in_parts(gt, detections, md[2], workers, per_category)
    # Each part's values hold for its own categories only.
    parts = list(zip(split.results, split.ranges, strict=True))
    values, valid = (
        np.concatenate([r[i][..., lo:hi] for r, (lo, hi) in parts], axis=-1) for i in (0, 1)
    )
    return _result(
        mean_over_valid(values, valid)[0],
        np.where(valid[0, 0], values[0, 0], np.nan),
        gt.category_ids,
        md,
        gt.num_images,
        split.dropped,
    )


def summarize(acc: CocoAccumulator) -> CocoEvalResult:
    """The plain evaluation (every image once) from a prepared accumulator."""
    stats, per_cat = acc.metrics(np.ones((1, acc.num_images)))
    return _result(
        stats[0], per_cat[0], acc.category_ids, acc.max_dets, acc.num_images, acc.num_dropped
    )


def _result(
    stats: np.ndarray,
    per_category_ap: np.ndarray,
    category_ids: np.ndarray,
    max_dets: tuple[int, int, int],
    num_images: int,
    dropped: int,
) -> CocoEvalResult:
    """The result of (12,) ``stats`` (NaN where no category qualifies) and (K,) AP."""
    stats = np.where(np.isnan(stats), -1.0, stats)
    return CocoEvalResult(
        stats=dict(zip(metric_names(max_dets), stats.tolist(), strict=True)),
        per_category_ap=dict(zip(category_ids.tolist(), per_category_ap.tolist(), strict=True)),
        max_dets=max_dets,
        num_images=num_images,
        num_detections_ignored=dropped,
    )

"""COCOeval.accumulate/summarize for a batch of image weights, from fixed per-image matches.

An image weight ``w_i`` (0, 1, 2, ...) counts image ``i`` that many times, as if its ground
truth and detections were copied with new image ids: weight 1 everywhere is the ordinary
evaluation, multinomial weights are bootstrap replicates. Matching never changes with the
weights, and neither does the score order; only the running sums along it do.

Per curve (area range, maxDets, IoU threshold, category) pycocotools computes, in score order,
``tc`` (true positives so far), ``fc`` (false positives so far), ``rc = tc / npig``,
``pr = tc / (fc + tc + eps)``, makes ``pr`` non-increasing from the right, and reads it at the
first position where ``rc >= r`` for the 101 recall thresholds ``r`` (0 where recall never gets
there). Three facts make the weighted version cheap and still exact:

- the envelope can only rise at true positives, and every recall threshold first reached is
  reached at one, so only true-positive positions need ``pr`` (``fc`` there is a difference of
  cumulative sums over the false positives);
- a detection that is a false positive at every threshold ("always-FP", most of them) enters
  only through those sums, so its weight is folded in once per replicate batch by one sparse
  matrix product (always-FP detections in the gap before each other detection, per image);
- the recall thresholds first reached at a true positive are ``count(tc) - count(tc_before)``
  with ``count(c)`` = thresholds ``<= c / npig``, read from a small table per replicate
  (:func:`recall_count_table`), so AP is a weighted sum of the envelope, without a search per
  threshold.

Integer weights keep every running sum an exact integer, so ``rc`` and the threshold decisions
are bit-identical to pycocotools; the envelope (a segmented running maximum done with
per-category offsets) agrees to ~1e-14. Ties: see :func:`expand_tied_runs`.

Measured on the val2017-sized bench case this takes ~30 ms per replicate for all 12 metrics,
where re-running the fastest exact evaluator per replicate takes ~1.3 s (BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparse_rcnn.platform.evaluation.count_matrix import CountMatrix
from sparse_rcnn.platform.evaluation.matching import (
    FALSE_POSITIVE,
    IGNORED,
    TRUE_POSITIVE,
)

# pycocotools Params.recThrs, built the same way so that the floats are identical.
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
_EPS = np.spacing(1)
_COUNT = np.int64  # running sums of weighted detection counts


def expand_tied_runs(
    category: np.ndarray,
    score: np.ndarray,
    image: np.ndarray,
    num_images: int,
    virtual_images: np.ndarray,
    copies: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Spell out runs of equal scores within one (image, category) as ``copies`` copies.

    pycocotools on a dataset where image ``i`` is copied ``w`` times sees such a run
    ``u1 u2`` as ``u1 u2 u1 u2 ...`` (copies are consecutive images); weighting each detection
    by ``w`` would give ``u1 u1 ... u2 u2 ...``, a different curve when the two differ in
    outcome. So each run is listed ``copies`` times, and copy ``c`` of image ``i`` gets weight
    column ``num_images + j * copies + c`` (``j`` = position of ``i`` in the sorted
    ``virtual_images``), which :func:`augment_weights` sets to ``1`` where ``w_i > c``.

    Args:
        category, score, image: (D,) detections in accumulation order.

    Returns:
        order: (D',) positions into the inputs, in the expanded sequence.
        column: (D',) int64 weight column of each entry.
    """
    n = len(score)
    same = (category[1:] == category[:-1]) & (score[1:] == score[:-1]) & (image[1:] == image[:-1])
    in_run = np.r_[same, False] | np.r_[False, same]
    if copies <= 1 or not in_run.any():
        return np.arange(n), image
    run_pos = np.flatnonzero(in_run)
    run_first = np.maximum.accumulate(np.where(np.r_[True, ~same][run_pos], run_pos, 0))
    rest = np.flatnonzero(~in_run)
    copy = np.repeat(np.arange(copies)[None, :], len(run_pos), axis=0).ravel()  # (L * copies,)
    pos = np.r_[rest, np.repeat(run_pos, copies)]
    major = np.r_[rest, np.repeat(run_first, copies)]
    minor = np.r_[np.zeros(len(rest), np.int64), copy]
    order = np.lexsort((pos, minor, major))
    pos, copy_of = pos[order], minor[order]
    column = image[pos].copy()
    virtual = in_run[pos]
    slot = np.searchsorted(virtual_images, image[pos[virtual]])
    column[virtual] = num_images + slot * copies + copy_of[virtual]
    return pos, column


def augment_weights(weights: np.ndarray, virtual_images: np.ndarray, copies: int) -> np.ndarray:
    """(B, N + V * copies) weights with the virtual columns of :func:`expand_tied_runs`."""
    if copies <= 1 or len(virtual_images) == 0:
        return weights
    extra = weights[:, virtual_images][:, :, None] > np.arange(copies)  # (B, V, copies)
    return np.concatenate([weights, extra.reshape(len(weights), -1)], axis=1, dtype=weights.dtype)


@dataclass(frozen=True)
class _ThresholdIndex:
    """Gather indices of one IoU threshold's curve (see :class:`PrecisionCurves`)."""

    tp_img: np.ndarray  # (P,) image of each true positive, in score order per category
    tp_cat: np.ndarray  # (P,) its category, non-decreasing
    tp_first: np.ndarray  # (P,) index of the first true positive of that category
    is_first: np.ndarray  # (P,) bool
    fp_img: np.ndarray  # (F,) image of each false positive among the other detections
    fp_hi: np.ndarray  # (P,) number of those false positives before the true positive
    fp_lo: np.ndarray  # (P,) ... before its category starts
    gap_hi: np.ndarray  # (P,) always-FP gaps up to and including the true positive's
    gap_lo: np.ndarray  # (P,) ... before its category starts
    seg_start: np.ndarray  # (S,) first true positive of each category that has one
    seg_cat: np.ndarray  # (S,) that category
    offset: np.ndarray  # (P,) keeps the running maximum inside its category


@dataclass(frozen=True)
class PrecisionCurves:
    """Weighted precision curves of one (area range, maxDets) for some IoU thresholds.

    Detections are split into always-FP ones (false positive at every threshold here) and the
    others, ``R`` (true positive somewhere, or ignored at some thresholds); ignored-everywhere
    ones are dropped. ``gaps`` (R, N) counts, per image, the always-FP detections just before
    each R detection; always-FP detections after a category's last R detection never change
    its AP and are dropped too.
    """

    num_categories: int
    gaps: CountMatrix
    per_threshold: tuple[_ThresholdIndex, ...]

    @classmethod
    def build(
        cls,
        unmatched: np.ndarray,
        candidates: np.ndarray,
        candidate_status: np.ndarray,
        column: np.ndarray,
        category: np.ndarray,
        num_columns: int,
        num_categories: int,
    ) -> PrecisionCurves:
        """From detections in accumulation order (see :class:`~.matching.Matches`).

        Args:
            unmatched: (D,) int8 status at every threshold of a non-candidate detection.
            candidates: (C,) increasing positions of the other detections.
            candidate_status: (T', C) int8 their status per IoU threshold.
            column: (D,) int64 weight column: the image index, or a virtual column of
                :func:`expand_tied_runs`; ``num_columns`` of them.
            category: (D,) int64 category index, non-decreasing.
        """
        image, num_images = column, num_columns
        always_fp = unmatched == FALSE_POSITIVE
        cand_fp = (candidate_status == FALSE_POSITIVE).all(axis=0)
        always_fp[candidates] = cand_fp
        in_r_cand = np.flatnonzero((candidate_status != IGNORED).any(axis=0) & ~cand_fp)
        r_pos = candidates[in_r_cand]
        in_r = np.zeros(len(unmatched), bool)
        in_r[r_pos] = True
        tp = candidate_status[:, in_r_cand] == TRUE_POSITIVE  # (T', R)
        fp = candidate_status[:, in_r_cand] == FALSE_POSITIVE
        r_img, r_cat = image[r_pos], category[r_pos]
        cats = np.arange(num_categories)
        r_start, r_end = np.searchsorted(r_cat, cats, "left"), np.searchsorted(r_cat, cats, "right")
        u_pos = np.flatnonzero(always_fp)
        gap = (np.cumsum(in_r) - in_r)[u_pos]  # R detections before it = the gap it sits in
        keep = gap < r_end[category[u_pos]]
        gaps = CountMatrix(gap[keep], image[u_pos][keep], (len(r_pos), num_images), np.int32)
        per_threshold = []
        for t in range(candidate_status.shape[0]):
            tpi = np.flatnonzero(tp[t])
            tp_cat = r_cat[tpi]
            # False positives after a category's last true positive cannot change its AP.
            n_before = np.searchsorted(tp_cat, cats, "right")  # (K,) true positives up to k
            has_tp = n_before > np.searchsorted(tp_cat, cats, "left")
            last_tp = np.where(has_tp, np.r_[tpi, -1][n_before - 1], -1)
            fpi = np.flatnonzero(fp[t])
            fpi = fpi[fpi < last_tp[r_cat[fpi]]]
            tp_first = np.searchsorted(tp_cat, tp_cat, "left")
            is_first = tp_first == np.arange(len(tpi))
            seg_start = np.flatnonzero(is_first)
            per_threshold.append(
                _ThresholdIndex(
                    tp_img=r_img[tpi],
                    tp_cat=tp_cat,
                    tp_first=tp_first,
                    is_first=is_first,
                    fp_img=r_img[fpi],
                    fp_hi=np.searchsorted(fpi, tpi),
                    fp_lo=np.searchsorted(fpi, r_start[tp_cat]),
                    gap_hi=tpi + 1,
                    gap_lo=r_start[tp_cat],
                    seg_start=seg_start,
                    seg_cat=tp_cat[seg_start],
                    offset=2.0 * (num_categories - 1 - tp_cat),
                )
            )
        return cls(num_categories, gaps, tuple(per_threshold))

    @property
    def size(self) -> int:
        """Largest per-replicate row length, for sizing replicate batches."""
        return max(
            [self.gaps.shape[0]] + [len(ix.tp_img) + len(ix.fp_img) for ix in self.per_threshold]
        )

    def ap_sums(self, weights: np.ndarray, num_gt: np.ndarray) -> np.ndarray:
        """(B, T', K) sum over the 101 recall thresholds of interpolated precision.

        Args:
            weights: (B, N) int32 image weights (columns as in :meth:`build`).
            num_gt: (B, K) int64 weighted count of non-ignored ground truth per category.

        Divide by 101 for the per-category AP; entries with ``num_gt == 0`` are meaningless.
        Running sums are integers (they count weighted detections): integer cumulative sums
        run 2-4x faster than float64 ones (no floating-point add-latency chain).
        """
        n_rep = len(weights)
        out = np.zeros((n_rep, len(self.per_threshold), self.num_categories))
        gap_sums = np.zeros((n_rep, self.gaps.shape[0] + 1), _COUNT)
        gaps = self.gaps.weighted(weights)  # (B, R)
        np.cumsum(gaps, axis=1, dtype=_COUNT, out=gap_sums[:, 1:])
        table, table_start = recall_count_table(num_gt)
        for t, ix in enumerate(self.per_threshold):
            if len(ix.tp_img) == 0:
                continue
            # Running sums at each true positive, restarted per category: (B, P) each.
            cum_tp = np.zeros((n_rep, len(ix.tp_img) + 1), _COUNT)
            np.cumsum(weights[:, ix.tp_img], axis=1, dtype=_COUNT, out=cum_tp[:, 1:])
            tc = cum_tp[:, 1:] - cum_tp[:, ix.tp_first]
            cum_fp = np.zeros((n_rep, len(ix.fp_img) + 1), _COUNT)
            np.cumsum(weights[:, ix.fp_img], axis=1, dtype=_COUNT, out=cum_fp[:, 1:])
            fc = cum_fp[:, ix.fp_hi]
            fc -= cum_fp[:, ix.fp_lo]
            fc += gap_sums[:, ix.gap_hi]
            fc -= gap_sums[:, ix.gap_lo]
            # pycocotools: tp / (fp + tp + eps) in float64, same operation order.
            fc += tc
            precision = fc.astype(np.float64)
            precision += _EPS
            np.divide(tc, precision, out=precision)
            # Running max from the right, per category: offsets grow towards the left so that
            # a later category never leaks into an earlier one. An offset depends on the
            # category alone, so a category's values (rounded to ~1e-14 by the offset) are the
            # same whichever other categories are evaluated with it (matching.match_in_parts).
            precision += ix.offset
            env = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
            env -= ix.offset
            # Recall thresholds first reached at each true positive: count(now) - count(before);
            # "before" is the previous true positive of the category (none for the first).
            lookup = table_start[:, ix.tp_cat]
            lookup += tc
            reached = table[lookup]  # (B, P) float64
            covered = reached.copy()
            covered[:, 1:] -= reached[:, :-1]
            covered[:, ix.is_first] = reached[:, ix.is_first]
            env *= covered
            out[:, t, ix.seg_cat] = np.add.reduceat(env, ix.seg_start, axis=1)
        return out


def recall_count_table(num_gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every ``c = 0 .. npig``: how many recall thresholds ``c / npig`` reaches.

    Args:
        num_gt: (B, K) integer-valued weighted ground-truth counts ``npig``.

    Returns:
        table: (sum(npig + 1),) float64; entry ``start[b, k] + c`` equals
            ``np.searchsorted(RECALL_THRESHOLDS, c / npig, side="right")`` (pycocotools'
            float division and linspace thresholds, bit for bit; 101 where ``npig = 0``).
        start: (B, K) int64 offsets.

    A true positive count ``c`` never exceeds ``npig``, so a lookup here replaces a division
    and a threshold search per true positive and IoU threshold; the table is ~10x smaller than
    the true-positive arrays it serves. It is built from the first ``c`` reaching each threshold.
    """
    npig = np.asarray(num_gt).astype(np.int64)
    g = np.maximum(npig, 1)[..., None].astype(np.float64)  # (B, K, 1)
    thr = RECALL_THRESHOLDS
    c = np.clip(np.ceil(thr * g), 0, g)  # (B, K, R) first c with c / g >= thr, up to rounding
    for _ in range(2):
        c = np.where((c >= 1) & ((c - 1) / g >= thr), c - 1, c)
        c = np.where(c / g < thr, c + 1, c)
    c = np.where(npig[..., None] > 0, c, 0).astype(np.int64)
    size = (npig + 1).ravel()
    start = np.cumsum(size) - size
    hist = np.bincount(
        (start.reshape(npig.shape)[..., None] + c).ravel(), minlength=int(size.sum())
    )
    table = np.cumsum(hist) - np.repeat(np.arange(len(size)) * len(thr), size)
    return table.astype(np.float64), start.reshape(npig.shape)


@dataclass(frozen=True)
class RecallCounts:
    """(T * K, N) sparse count of true positives per (threshold, category) and image."""

    counts: CountMatrix
    num_thresholds: int
    num_categories: int

    @classmethod
    def build(
        cls,
        status: np.ndarray,
        image: np.ndarray,
        category: np.ndarray,
        num_images: int,
        num_categories: int,
    ) -> RecallCounts:
        """From (T, C) statuses of (candidate) detections and their (C,) image/category."""
        t, d = np.nonzero(status == TRUE_POSITIVE)  # t-major, so rows come sorted
        shape = (status.shape[0] * num_categories, num_images)
        counts = CountMatrix(t * num_categories + category[d], image[d], shape, np.float64)
        return cls(counts, status.shape[0], num_categories)

    def true_positives(self, weights: np.ndarray) -> np.ndarray:
        """(B, T, K) weighted true-positive count for (B, N) image weights."""
        out = self.counts.weighted(weights)
        return out.reshape(len(weights), self.num_thresholds, self.num_categories)

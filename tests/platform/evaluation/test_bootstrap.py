"""Image bootstrap: replicates against the physical-copy oracle, CIs and the paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_rcnn.platform.evaluation.bootstrap import (
    bootstrap,
    bootstrap_weights,
    paired_bootstrap,
    percentile_ci,
)
from sparse_rcnn.platform.evaluation.coco_eval import MMDET_MAX_DETS, evaluate, prepare
from sparse_rcnn.platform.evaluation.detections import Detections

TOL = 1e-9


def _dets(results: list[dict]) -> Detections:
    return Detections.from_coco_results(results)


def _worse(dets: list[dict], seed: int) -> list[dict]:
    """A second, worse detection set: the same boxes with scores shuffled, a tenth dropped."""
    rng = np.random.default_rng(seed)
    scores = rng.permutation([d["score"] for d in dets])
    keep = rng.random(len(dets)) > 0.1
    return [{**d, "score": float(s)} for d, s, k in zip(dets, scores, keep, strict=True) if k]


def test_weights_are_multinomial_counts_and_reproducible():
    w = bootstrap_weights(50, 200, seed=3)
    assert w.shape == (200, 50) and w.dtype == np.int64
    assert (w.sum(axis=1) == 50).all()
    assert (w >= 2).any() and (w == 0).any()  # duplicates kept, some images left out
    assert 0.55 < (w > 0).mean() < 0.72  # ~63% of images drawn per replicate
    np.testing.assert_array_equal(w, bootstrap_weights(50, 200, seed=3))
    assert not np.array_equal(w, bootstrap_weights(50, 200, seed=4))
    # The first rows do not depend on how many replicates are asked for.
    np.testing.assert_array_equal(w[:10], bootstrap_weights(50, 10, seed=3))


@pytest.mark.parametrize("seed", [0, 1])
def test_replicates_equal_pycocotools_on_physical_copies(make_case, pycoco, copy_images, seed):
    gt, dets = make_case(seed + 20)
    g, acc = prepare(gt, _dets(dets))
    weights = bootstrap_weights(g.num_images, 3, seed)
    ours, _ = acc.metrics(weights)
    for b in range(3):
        gt_b, dets_b = copy_images(gt, dets, weights[b])
        np.testing.assert_allclose(ours[b], pycoco(gt_b, dets_b), rtol=0, atol=TOL)


def test_replicate_with_ties_across_images_equals_oracle(make_case, pycoco, copy_images):
    # Scores tie across images but never within one (image, category): still exact.
    gt, dets = make_case(30, n_images=30)
    seen: dict[tuple, set] = {}
    levels = np.round(np.linspace(0.05, 0.95, 19), 2)
    for i, d in enumerate(dets):
        used = seen.setdefault((d["image_id"], d["category_id"]), set())
        free = [s for s in levels if s not in used] or [0.001 * (i + 1)]
        d["score"] = float(free[i % len(free)])
        used.add(d["score"])
    g, acc = prepare(gt, _dets(dets))
    weights = bootstrap_weights(g.num_images, 2, 7)
    ours, _ = acc.metrics(weights)
    for b in range(2):
        np.testing.assert_allclose(ours[b], pycoco(*copy_images(gt, dets, weights[b])), atol=TOL)


def test_replicates_with_ties_inside_images_equal_oracle(make_case, pycoco, copy_images):
    # Rounded scores tie inside (image, category) runs too; pycocotools interleaves the copies
    # of such a run, which the accumulator reproduces with per-copy columns.
    gt, dets = make_case(32, n_images=30, tie_scores=True)
    g, acc = prepare(gt, _dets(dets))
    weights = bootstrap_weights(g.num_images, 3, 11)
    assert weights.max() >= 3
    ours, _ = acc.metrics(weights)
    for b in range(3):
        np.testing.assert_allclose(ours[b], pycoco(*copy_images(gt, dets, weights[b])), atol=TOL)
    # A plain evaluation afterwards still equals pycocotools.
    np.testing.assert_allclose(
        acc.metrics(np.ones((1, g.num_images)))[0][0], pycoco(gt, dets), atol=TOL
    )


def test_mmdet_max_dets_replicate_equals_oracle(make_case, pycoco, copy_images):
    gt, dets = make_case(31, crowded_group=350)
    g, acc = prepare(gt, _dets(dets), MMDET_MAX_DETS)
    w = bootstrap_weights(g.num_images, 1, 0)
    ours, _ = acc.metrics(w)
    ref = pycoco(*copy_images(gt, dets, w[0]), max_dets=MMDET_MAX_DETS)
    np.testing.assert_allclose(ours[0], ref, rtol=0, atol=TOL)


def test_batches_and_threads_do_not_change_replicates(coco_case, monkeypatch):
    import sparse_rcnn.platform.evaluation.coco_eval as coco_eval

    gt, dets = coco_case
    _, acc = prepare(gt, _dets(dets))
    w = bootstrap_weights(len(gt["images"]), 12, 0)
    whole = acc.metrics(w, threads=1)
    monkeypatch.setattr(coco_eval, "_ELEMENTS_PER_BATCH", 1)  # one replicate per batch
    for threads in (1, 2):
        parts = acc.metrics(w, threads=threads)
        np.testing.assert_array_equal(parts[0], whole[0])
        np.testing.assert_array_equal(parts[1], whole[1])


def test_bootstrap_result(coco_case, pycoco, copy_images):
    gt, dets = coco_case
    res = bootstrap(gt, _dets(dets), num_replicates=200, seed=5)
    assert res.replicates.shape == (200, 12) and res.num_replicates == 200
    point = evaluate(gt, _dets(dets)).stats_array()
    np.testing.assert_allclose(res.point, point, atol=TOL)
    # Replicate 0 is pycocotools on the images drawn by bootstrap_weights(N, B, seed)[0].
    w0 = bootstrap_weights(len(gt["images"]), 200, 5)[0]
    np.testing.assert_allclose(res.replicates[0], pycoco(*copy_images(gt, dets, w0)), atol=TOL)
    lo, hi = np.percentile(res.replicates[:, 0], [2.5, 97.5])
    assert (res.ci_low[0], res.ci_high[0]) == pytest.approx((lo, hi))
    assert (res.ci_low <= res.ci_high).all()
    assert res.std_error[0] == pytest.approx(np.std(res.replicates[:, 0], ddof=1))
    assert res.bias[0] == pytest.approx(res.replicates[:, 0].mean() - res.point[0])
    assert 0 < res.std_error[0] < 0.2
    # Per-category intervals; the category without ground truth has none.
    k = list(res.category_ids).index(20)
    assert np.isnan(res.category_point[k]) and np.isnan(res.category_ci_low[k])
    assert np.nanmean(res.category_point) == pytest.approx(res.point[0], abs=TOL)
    again = bootstrap(gt, _dets(dets), num_replicates=200, seed=5)
    np.testing.assert_array_equal(again.replicates, res.replicates)


def test_paired_bootstrap_values(coco_case, pycoco, copy_images):
    gt, dets = coco_case
    other = _worse(dets, 1)
    res = paired_bootstrap(gt, _dets(dets), _dets(other), num_replicates=100, seed=2)
    a = bootstrap(gt, _dets(dets), num_replicates=100, seed=2)
    b = bootstrap(gt, _dets(other), num_replicates=100, seed=2)
    np.testing.assert_allclose(res.replicates, a.replicates - b.replicates, atol=TOL)
    np.testing.assert_allclose(res.diff, a.point - b.point, atol=TOL)
    w = bootstrap_weights(len(gt["images"]), 1, 2)[0]
    oracle = pycoco(*copy_images(gt, dets, w)) - pycoco(*copy_images(gt, other, w))
    np.testing.assert_allclose(res.replicates[0], oracle, atol=TOL)
    assert res.prob_positive[0] == pytest.approx(np.mean(res.replicates[:, 0] > 0))
    assert res.diff[0] > 0 and res.prob_positive[0] > 0.9  # shuffled scores hurt
    lo, hi = np.percentile(res.replicates[:, 0], [2.5, 97.5])
    assert (res.ci_low[0], res.ci_high[0]) == pytest.approx((lo, hi))


def test_paired_bootstrap_of_identical_sets_is_zero(coco_case):
    gt, dets = coco_case
    res = paired_bootstrap(gt, _dets(dets), _dets(dets), num_replicates=50, seed=0)
    assert np.nanmax(np.abs(res.replicates)) == 0.0
    assert (res.prob_positive == 0).all() and (res.ci_low == 0).all() and (res.ci_high == 0).all()


def test_percentile_ci_ignores_nan_replicates():
    reps = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan], [np.nan, np.nan]])
    lo, hi = percentile_ci(reps, 0.5)
    assert (lo[0], hi[0]) == (1.5, 2.5) and np.isnan(lo[1]) and np.isnan(hi[1])
    with pytest.raises(ValueError, match="confidence"):
        percentile_ci(reps, 95)


def test_bad_bootstrap_arguments(coco_case):
    gt, dets = coco_case
    with pytest.raises(ValueError, match="num_replicates"):
        bootstrap(gt, _dets(dets), num_replicates=0)

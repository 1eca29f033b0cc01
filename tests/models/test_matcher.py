from __future__ import annotations

import itertools
import math

import pytest
import torch

from sparse_rcnn.models.matcher import HungarianMatcher, NonFiniteCostError


def random_boxes(n: int, g: torch.Generator, size: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * size * 0.7
    wh = torch.rand(n, 2, generator=g) * size * 0.3 + 1.0
    return torch.cat([xy, xy + wh], dim=1)


def case(n: int, m: int, seed: int, k: int = 5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g) * 2
    boxes = random_boxes(n, g)
    labels = torch.randint(0, k, (m,), generator=g)
    gt = random_boxes(m, g)
    whwh = torch.tensor([100.0, 80.0, 100.0, 80.0])
    return logits, boxes, labels, gt, whwh


def manual_cost(logits, boxes, labels, gt, whwh, i, j):
    """One entry of the cost written out from the mmdetection formulas."""
    p = torch.sigmoid(logits[i, labels[j]]).item()
    a, gam, eps = 0.25, 2.0, 1e-12
    focal = a * (1 - p) ** gam * -math.log(p + eps) - (1 - a) * p**gam * -math.log(1 - p + eps)
    l1 = (boxes[i] / whwh - gt[j] / whwh).abs().sum().item()
    b, t = boxes[i], gt[j]
    inter_w = max(0.0, (min(b[2], t[2]) - max(b[0], t[0])).item())
    inter_h = max(0.0, (min(b[3], t[3]) - max(b[1], t[1])).item())
    area_b = ((b[2] - b[0]) * (b[3] - b[1])).item()
    area_t = ((t[2] - t[0]) * (t[3] - t[1])).item()
    union = area_b + area_t - inter_w * inter_h
    hull = ((max(b[2], t[2]) - min(b[0], t[0])) * (max(b[3], t[3]) - min(b[1], t[1]))).item()
    giou = inter_w * inter_h / union - (hull - union) / hull
    return 2.0 * focal + 5.0 * l1 + 2.0 * -giou


def test_cost_entries_follow_the_formulas():
    logits, boxes, labels, gt, whwh = case(4, 3, seed=0)
    cost = HungarianMatcher().cost(logits, boxes, labels, gt, whwh)
    for i in range(4):
        for j in range(3):
            assert cost[i, j].item() == pytest.approx(
                manual_cost(logits, boxes, labels, gt, whwh, i, j), rel=1e-5, abs=1e-5
            )


def brute_force_min(cost: torch.Tensor) -> float:
    n, m = cost.shape
    best = math.inf
    if m <= n:
        for rows in itertools.permutations(range(n), m):
            best = min(best, sum(cost[r, c].item() for c, r in enumerate(rows)))
    else:
        for cols in itertools.permutations(range(m), n):
            best = min(best, sum(cost[r, c].item() for r, c in enumerate(cols)))
    return best


@pytest.mark.parametrize("n,m", [(5, 3), (6, 6), (4, 1), (3, 5), (2, 4)])
@pytest.mark.parametrize("seed", range(4))
def test_assignment_equals_brute_force(n, m, seed):
    logits, boxes, labels, gt, whwh = case(n, m, seed)
    matcher = HungarianMatcher()
    rows, cols = matcher(logits, boxes, labels, gt, whwh)
    cost = matcher.cost(logits, boxes, labels, gt, whwh)
    assert len(rows) == len(cols) == min(n, m)
    assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
    got = cost[rows, cols].sum().item()
    assert got == pytest.approx(brute_force_min(cost), rel=1e-6, abs=1e-6)


def test_zero_ground_truth_matches_nothing():
    logits, boxes, _, _, whwh = case(5, 0, seed=1)
    rows, cols = HungarianMatcher()(
        logits, boxes, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4), whwh
    )
    assert rows.numel() == 0 and cols.numel() == 0 and rows.dtype == torch.int64


def test_more_ground_truth_than_proposals_matches_every_proposal():
    logits, boxes, labels, gt, whwh = case(3, 7, seed=2)
    rows, cols = HungarianMatcher()(logits, boxes, labels, gt, whwh)
    assert sorted(rows.tolist()) == [0, 1, 2]
    assert len(set(cols.tolist())) == 3 and max(cols.tolist()) < 7


def test_non_finite_predictions_raise_a_named_error():
    logits, boxes, labels, gt, whwh = case(4, 2, seed=3)
    logits[1, 0] = float("nan")
    boxes[2, 2] = float("inf")
    with pytest.raises(NonFiniteCostError, match="NaN/Inf"):
        HungarianMatcher()(logits, boxes, labels, gt, whwh)

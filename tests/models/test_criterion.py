from __future__ import annotations

import pytest
import torch
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from sparse_rcnn.models.config import ModelConfig
from sparse_rcnn.models.criterion import SetCriterion, Target, loss_names, total_loss
from sparse_rcnn.models.detector import DetectorOutput, StageOutput

K = 80


def boxes(n: int, g: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * 150
    wh = torch.rand(n, 2, generator=g) * 80 + 2
    return torch.cat([xy, xy + wh], 1)


def make_case(num_gt: list[int], n: int = 6, stages: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    b = len(num_gt)
    outs = [
        StageOutput(
            torch.randn(b, n, K, generator=g).requires_grad_(),
            boxes(b * n, g).view(b, n, 4).requires_grad_(),
        )
        for _ in range(stages)
    ]
    whwh = torch.tensor([[240.0, 200.0, 240.0, 200.0]] * b)
    targets = [Target(boxes(m, g), torch.randint(0, K, (m,), generator=g)) for m in num_gt]
    return DetectorOutput(outs, whwh), targets


def reference_stage_losses(stage, whwh, targets, matcher, num_boxes):
    """The losses written out with torchvision's loss functions and an explicit target."""
    cls_t = torch.zeros_like(stage.logits)
    l1 = giou = 0.0
    for j, t in enumerate(targets):
        pi, gi = matcher(stage.logits[j].detach(), stage.boxes[j].detach(), t.labels, t.boxes,
                         whwh[j])  # fmt: skip
        for p, q in zip(pi.tolist(), gi.tolist(), strict=True):
            cls_t[j, p, t.labels[q]] = 1
            pred, gt = stage.boxes[j, p], t.boxes[q]
            l1 = l1 + ((pred - gt).abs() / whwh[j]).sum()
            giou = giou + generalized_box_iou_loss(pred[None], gt[None], reduction="sum")
    focal = sigmoid_focal_loss(stage.logits, cls_t, 0.25, 2.0, reduction="sum")
    return 2.0 * focal / num_boxes, 5.0 * l1 / num_boxes, 2.0 * giou / num_boxes


@pytest.mark.parametrize("seed", range(3))
def test_losses_equal_torchvision_reference(seed):
    out, targets = make_case([3, 1, 4], seed=seed)
    crit = SetCriterion(ModelConfig())
    num_boxes = 8.0
    losses = crit(out, targets, num_boxes)
    assert [k for k in losses if ".loss_" in k] == loss_names(2)
    for i, stage in enumerate(out.stages):
        cls, l1, giou = reference_stage_losses(stage, out.whwh, targets, crit.matcher, num_boxes)
        torch.testing.assert_close(losses[f"stage{i}.loss_cls"], cls, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(losses[f"stage{i}.loss_bbox"], l1, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(losses[f"stage{i}.loss_iou"], giou, rtol=1e-5, atol=1e-6)
    total = total_loss(losses)
    manual = sum(losses[k] for k in loss_names(2))
    torch.testing.assert_close(total, manual)
    total.backward()
    assert out.stages[0].logits.grad is not None and out.stages[1].boxes.grad is not None


def test_num_boxes_divides_every_term():
    out, targets = make_case([2, 2], seed=5)
    crit = SetCriterion(ModelConfig())
    a, b = crit(out, targets, 4.0), crit(out, targets, 2.0)
    for k in loss_names(2):
        torch.testing.assert_close(a[k] * 2, b[k])


def test_image_without_ground_truth():
    out, targets = make_case([0], seed=7)
    losses = SetCriterion(ModelConfig())(out, targets, num_boxes=0.0)
    for i in range(2):
        assert losses[f"stage{i}.loss_bbox"].item() == 0.0
        assert losses[f"stage{i}.loss_iou"].item() == 0.0
        assert torch.isfinite(losses[f"stage{i}.loss_cls"]) and losses[f"stage{i}.loss_cls"] > 0
        expected = 2.0 * sigmoid_focal_loss(
            out.stages[i].logits, torch.zeros_like(out.stages[i].logits), reduction="sum"
        )
        torch.testing.assert_close(losses[f"stage{i}.loss_cls"], expected)  # num_boxes clamped to 1
    total_loss(losses).backward()  # the zero terms stay connected to the graph
    assert out.stages[0].boxes.grad is not None
    assert torch.count_nonzero(out.stages[0].boxes.grad) == 0


def test_mixed_batch_with_an_empty_image():
    out, targets = make_case([0, 3], seed=9)
    losses = SetCriterion(ModelConfig())(out, targets, num_boxes=3.0)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["stage0.loss_bbox"] > 0


def test_pos_acc_is_percent_of_correct_top_class():
    out, targets = make_case([3, 2], seed=11)
    crit = SetCriterion(ModelConfig())
    stage = out.stages[0]
    matches = [crit.matcher(stage.logits[j].detach(), stage.boxes[j].detach(), t.labels,
                            t.boxes, out.whwh[j]) for j, t in enumerate(targets)]  # fmt: skip
    # Make the top class right for exactly 2 of the 5 matched proposals; the matching itself
    # uses the same logits, so recompute it on the edited logits below.
    edited = 0
    for (pi, gi), t, j in zip(matches, targets, range(2), strict=True):
        for p, q in zip(pi.tolist(), gi.tolist(), strict=True):
            if edited < 2:
                stage.logits.data[j, p, t.labels[q]] = 20.0
                edited += 1
    correct = total = 0
    for j, t in enumerate(targets):
        pi, gi = crit.matcher(stage.logits[j].detach(), stage.boxes[j].detach(), t.labels,
                              t.boxes, out.whwh[j])  # fmt: skip
        top = stage.logits[j, pi].argmax(-1)
        correct += int((top == t.labels[gi]).sum())
        total += len(pi)
    losses = crit(out, targets, 5.0)
    assert correct >= 2
    assert losses["stage0.pos_acc"].item() == pytest.approx(100.0 * correct / total)

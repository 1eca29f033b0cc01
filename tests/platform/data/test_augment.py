"""Training pipelines: scales, crop and flip semantics, image/box agreement, seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparse_rcnn.platform.data import augment as A
from sparse_rcnn.platform.data.transforms import PIXEL_MEAN, PIXEL_STD, boxes_to_original
from sparse_rcnn.platform.data.transforms import test_transform as reference_test_transform

NO_LABELS = torch.zeros((0,), dtype=torch.int64)
NO_BOXES = torch.zeros((0, 4))


def denormalize(image: torch.Tensor) -> torch.Tensor:
    return image * torch.tensor(PIXEL_STD).view(3, 1, 1) + torch.tensor(PIXEL_MEAN).view(3, 1, 1)


def test_scale_sets_are_the_reference_ones():
    assert A.SINGLE_SCALE == (1333, 800)
    shorts = [480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800]
    assert A.MULTISCALE_SCALES == tuple((1333, s) for s in shorts)
    assert A.CROP_PRE_SCALES == ((1333, 400), (1333, 500), (1333, 600))
    assert A.CROP_SIZE_RANGE == (384, 600)
    assert set(A.PIPELINES) == {"single_scale", "multiscale", "crop_multiscale", "test"}
    with pytest.raises(ValueError, match="unknown pipeline 'ms'"):
        A.get_pipeline("ms")


def test_flip_boxes():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 100.0, 5.0]])
    assert A.flip_boxes(boxes, 100).tolist() == [[70, 20, 90, 40], [0, 0, 100, 5]]
    assert A.flip_boxes(NO_BOXES, 100).shape == (0, 4)


def test_resize_boxes_scales_and_clips_but_keeps_empty():
    boxes = torch.tensor([[10.0, 10.0, 20.0, 30.0], [40.0, 0.0, 60.0, 10.0], [70, 5, 80, 9]])
    out = A.resize_boxes(boxes, (2.0, 1.5), (45, 100))  # size (h, w)
    assert out.tolist() == [[20, 15, 40, 45], [80, 0, 100, 15], [100, 7.5, 100, 13.5]]


def test_crop_boxes_shift_clip_and_remove():
    boxes = torch.tensor(
        [
            [10.0, 10.0, 50.0, 50.0],  # -> [0, 0, 20, 30]
            [0.0, 0.0, 5.0, 5.0],  # left of and above the window: removed
            [90.0, 90.0, 130.0, 120.0],  # right of and below: removed
            [40.0, 0.0, 60.0, 8.0],  # above: zero height after clipping, removed
            [35.0, 25.0, 45.0, 100.0],  # -> [5, 5, 15, 50]
        ]
    )
    out, keep = A.crop_boxes(boxes, top=20, left=30, size=(50, 40))
    assert keep.tolist() == [True, False, False, False, True]
    assert out.tolist() == [[0, 0, 20, 30], [5, 5, 15, 50]]
    empty, keep = A.crop_boxes(NO_BOXES, 3, 4, (10, 10))
    assert empty.shape == (0, 4) and keep.shape == (0,)


def test_crop_window_ranges_and_mmdet_draw_order():
    big, small = [], []
    for seed in range(300):
        top, left, ch, cw = A.crop_window((800, 1100), np.random.default_rng(seed))
        assert 384 <= ch <= 600 and 384 <= cw <= 600
        assert 0 <= top <= 800 - ch and 0 <= left <= 1100 - cw
        big.append((ch, cw))
        small.append(A.crop_window((300, 500), np.random.default_rng(seed)))
    chs, cws = zip(*big, strict=True)
    assert min(chs) < 400 and max(chs) > 585 and min(cws) < 400 and max(cws) > 585
    # a side under 384 is kept whole; the other side ranges over [384, min(side, 600)]
    assert all(ch == 300 and top == 0 and 384 <= cw <= 500 for top, _, ch, cw in small)
    # draws: crop height, crop width, top offset, left offset (mmdetection's order)
    rng, ref = np.random.default_rng(11), np.random.default_rng(11)
    ch = ref.integers(384, 601)
    cw = ref.integers(384, 601)
    expected = (ref.integers(0, 800 - ch + 1), ref.integers(0, 1100 - cw + 1), ch, cw)
    assert A.crop_window((800, 1100), rng) == tuple(int(v) for v in expected)


def test_single_scale_flip_draw_and_sizes():
    image = torch.zeros((3, 48, 64), dtype=torch.uint8)
    boxes = torch.tensor([[10.0, 5.0, 20.0, 15.0]])
    flips = []
    for seed in range(8):
        out = A.single_scale(image, boxes, torch.tensor([3]), np.random.default_rng(seed), 1)
        assert out.image.shape == (3, 800, 1067) and out.labels.tolist() == [3]
        flipped = bool(np.random.default_rng(seed).random() < 0.5)  # the only draw
        assert out.meta.flipped == flipped
        s = (1067 / 64, 800 / 48)
        x1, x2 = 10 * s[0], 20 * s[0]
        if flipped:
            x1, x2 = 1067 - x2, 1067 - x1
        assert out.boxes[0].tolist() == pytest.approx([x1, 5 * s[1], x2, 15 * s[1]])
        flips.append(flipped)
    assert 0 < sum(flips) < 8


def test_multiscale_draws_a_scale_uniformly_then_flips():
    image = torch.zeros((3, 4, 3), dtype=torch.uint8)  # portrait and tiny: cheap to resize
    shorts = set()
    for seed in range(24):
        out = A.multiscale(image, NO_BOXES, NO_LABELS, np.random.default_rng(seed), 1)
        ref = np.random.default_rng(seed)
        _, short = A.MULTISCALE_SCALES[ref.integers(11)]
        assert out.meta.size == (round(4 * short / 3), short)
        assert out.meta.flipped == (ref.random() < 0.5)
        shorts.add(short)
    assert len(shorts) >= 8
    wide = torch.zeros((3, 10, 40), dtype=torch.uint8)  # 1:4, the 1333 cap always binds
    out = A.multiscale(wide, NO_BOXES, NO_LABELS, np.random.default_rng(0), 1)
    assert out.meta.size == (333, 1333)


def _square_image() -> tuple[torch.Tensor, torch.Tensor]:
    """A white rectangle on black at xyxy [8, 16, 32, 40] in an 80x60 (WxH) image, off the
    vertical midline so that a flip moves it."""
    image = torch.zeros((3, 60, 80), dtype=torch.uint8)
    image[:, 16:40, 8:32] = 255
    return image, torch.tensor([[8.0, 16.0, 32.0, 40.0]])


@pytest.mark.parametrize("name", ["single_scale", "multiscale", "crop_multiscale", "test"])
def test_boxes_follow_the_pixels_and_map_back(name):
    image, boxes = _square_image()
    pipeline = A.get_pipeline(name)
    crops = 0
    for seed in range(12):
        out = pipeline(image, boxes, torch.tensor([5]), np.random.default_rng(seed), 7)
        h, w = out.meta.size
        assert out.image.shape == (3, h, w) and out.image.dtype == torch.float32
        assert out.meta.image_id == 7 and out.meta.orig_size == (60, 80)
        if name == "crop_multiscale":
            assert min(h, w) in {s for _, s in A.MULTISCALE_SCALES} or max(h, w) == 1333
        crops += out.meta.offset != (0.0, 0.0)
        if len(out.boxes) == 0:  # the crop missed the square: allowed (allow_negative_crop)
            assert name == "crop_multiscale" and out.labels.numel() == 0
            continue
        assert out.labels.tolist() == [5]
        x1, y1, x2, y2 = out.boxes[0].round().int().tolist()
        pixels = denormalize(out.image)
        m = int(max(out.meta.scale_factor)) + 2  # bilinear blurs edges over ~1 source pixel
        if x2 - x1 > 2 * m and y2 - y1 > 2 * m:  # inside the box: white
            assert pixels[:, y1 + m : y2 - m, x1 + m : x2 - m].mean() > 250
        if x1 >= m + 2:  # beside it: black
            assert pixels[:, y1:y2, x1 - m - 2 : x1 - m].mean() < 5
        if x2 + m + 2 <= w:
            assert pixels[:, y1:y2, x2 + m : x2 + m + 2].mean() < 5
        back = boxes_to_original(out.boxes, out.meta)[0]
        if out.meta.offset == (0.0, 0.0):  # whole image: exact inverse
            assert back.tolist() == pytest.approx(boxes[0].tolist(), abs=1e-3)
        else:  # cropped: the part of the square inside the crop window
            assert (back[:2] >= boxes[0, :2] - 1e-3).all() and (
                back[2:] <= boxes[0, 2:] + 1e-3
            ).all()
    if name == "crop_multiscale":
        assert 2 <= crops <= 10


def test_inference_pipeline_equals_test_transform():
    image = torch.randint(0, 256, (3, 37, 53), dtype=torch.uint8)
    ref_image, ref_meta = reference_test_transform(image, 3)
    out = A.get_pipeline("test")(image, torch.tensor([[1.0, 2, 3, 4]]), torch.tensor([0]), None, 3)
    assert torch.equal(out.image, ref_image) and out.meta == ref_meta


def test_same_rng_same_sample_and_rng_depends_on_seed_epoch_image():
    image, boxes = _square_image()

    def run(rng: np.random.Generator) -> A.Augmented:
        return A.crop_multiscale(image, boxes, torch.tensor([1]), rng, 1)

    a, b = run(A.sample_rng(3, 1, 42)), run(A.sample_rng(3, 1, 42))
    assert torch.equal(a.image, b.image) and torch.equal(a.boxes, b.boxes) and a.meta == b.meta
    draws = {k: A.sample_rng(*k).random(4).tolist() for k in [(3, 1, 42), (4, 1, 42),
                                                              (3, 2, 42), (3, 1, 43)]}  # fmt: skip
    assert len({tuple(v) for v in draws.values()}) == 4
    with pytest.raises(ValueError, match="aug_seed"):
        A.sample_rng(-1, 0, 1)


def test_bad_input_shapes_are_named():
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        A.single_scale(torch.zeros(60, 80), NO_BOXES, NO_LABELS, np.random.default_rng(0), 1)
    with pytest.raises(ValueError, match="boxes"):
        A.single_scale(
            torch.zeros(3, 6, 8), torch.zeros(2, 4), NO_LABELS, np.random.default_rng(0), 1
        )


def test_scaled_input_sizes_keep_the_reference_proportions():
    sizes = A.InputSizes.scaled(0.4)
    assert sizes.single == (533, 320)
    assert [s for _, s in sizes.multiscale] == [192, 205, 218, 230, 243, 256, 269, 282, 294, 307,
                                                320]  # fmt: skip
    assert sizes.crop_pre == ((533, 160), (533, 200), (533, 240))
    assert sizes.crop_range == (154, 240)
    assert A.InputSizes.scaled(1.0) == A.InputSizes()
    with pytest.raises(ValueError, match="ratio"):
        A.InputSizes.scaled(0)
    image = torch.zeros(3, 480, 640, dtype=torch.uint8)
    boxes, labels = torch.tensor([[10.0, 10.0, 100.0, 100.0]]), torch.tensor([0])
    pipeline = A.get_pipeline("multiscale", sizes)
    shorts = {
        min(pipeline(image, boxes, labels, A.sample_rng(0, 0, i), i).image.shape[-2:])
        for i in range(60)
    }
    assert shorts <= {s for _, s in sizes.multiscale} and len(shorts) > 5
    out = A.get_pipeline("test", sizes)(image, boxes, labels, None, 1)
    assert tuple(out.image.shape[-2:]) == (320, 427)
    torch.testing.assert_close(out.boxes, boxes * torch.tensor([427 / 640, 320 / 480] * 2))

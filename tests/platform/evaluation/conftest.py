"""Small synthetic COCO sets with every evaluation edge case, and pycocotools as the oracle."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

CATEGORY_IDS = (1, 3, 7, 8, 12, 20)  # non-contiguous; 20 never has ground truth
UNLISTED_CATEGORY = 99  # detections on it are ignored by COCOeval


def make_coco(
    seed: int,
    n_images: int = 40,
    tie_scores: bool = False,
    crowd_rate: float = 0.1,
    crowded_group: int = 130,
) -> tuple[dict, list[dict]]:
    """A COCO ground-truth dict and a results list that exercise COCOeval's edge cases.

    Covers: crowd regions, annotations with an ``ignore`` field (pycocotools overwrites it),
    areas exactly on the small/medium/large borders, images without ground truth, images
    without detections, a listed category without ground truth, detections on an unlisted
    category, one (image, category) with ``crowded_group`` detections (> maxDets=100), and
    (``tie_scores``) scores rounded to one decimal so that many tie.
    """
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    image_ids = rng.choice(np.arange(1, 10 * n_images), size=n_images, replace=False)
    for k, img_id in enumerate(image_ids.tolist()):
        W, H = 640, 480
        images.append({"id": img_id, "width": W, "height": H, "file_name": f"{img_id}.jpg"})
        n_gt = 0 if k % 7 == 3 else int(rng.integers(1, 8))
        gts = []
        for _ in range(n_gt):
            cat = int(rng.choice(CATEGORY_IDS[:-1]))
            side = float(np.exp(rng.uniform(np.log(8), np.log(300))))
            w, h = side * rng.uniform(0.6, 1.4), side * rng.uniform(0.6, 1.4)
            x, y = rng.uniform(0, W - w / 2), rng.uniform(0, H - h / 2)
            area = w * h * rng.uniform(0.4, 1.0)
            r = rng.random()
            if r < 0.05:
                area = 32.0**2
            elif r < 0.1:
                area = 96.0**2
            ann = {
                "id": len(anns) + 1,
                "image_id": img_id,
                "category_id": cat,
                "bbox": [x, y, w, h],
                "area": area,
                "iscrowd": int(rng.random() < crowd_rate),
            }
            if rng.random() < 0.1:
                ann["ignore"] = 1
            anns.append(ann)
            gts.append(ann)
        if k % 5 == 2:
            continue  # an image without detections
        for g in gts:
            for _ in range(int(rng.integers(0, 4))):
                x, y, w, h = g["bbox"]
                jit = rng.normal(0, 0.1, 4) * np.array([w, h, w, h])
                cat = g["category_id"] if rng.random() < 0.85 else int(rng.choice(CATEGORY_IDS))
                box = [x + jit[0], y + jit[1], max(w + jit[2], 1.0), max(h + jit[3], 1.0)]
                score = rng.uniform(0.3, 1.0)
                dets.append({"image_id": img_id, "category_id": cat, "bbox": box, "score": score})
        for _ in range(int(rng.integers(0, 12))):
            cat = int(rng.choice(CATEGORY_IDS + (UNLISTED_CATEGORY,)))
            w, h = rng.uniform(4, 200, 2)
            box = [rng.uniform(0, W - w), rng.uniform(0, H - h), w, h]
            score = rng.uniform(0.0, 0.7)
            dets.append({"image_id": img_id, "category_id": cat, "bbox": box, "score": score})
    # One (image, category) with more detections than maxDets, around its ground truth.
    g = next(a for a in anns if not a["iscrowd"])
    for _ in range(crowded_group):
        x, y, w, h = g["bbox"]
        jit = rng.normal(0, 0.15, 4) * np.array([w, h, w, h])
        box = [x + jit[0], y + jit[1], max(w + jit[2], 1.0), max(h + jit[3], 1.0)]
        score = rng.uniform(0.0, 1.0)
        dets.append(
            {
                "image_id": g["image_id"],
                "category_id": g["category_id"],
                "bbox": box,
                "score": score,
            }
        )
    if tie_scores:
        for d in dets:
            d["score"] = round(d["score"], 1)
    categories = [{"id": c, "name": f"c{c}"} for c in CATEGORY_IDS]
    return {"images": images, "annotations": anns, "categories": categories}, dets


def pycoco_stats(gt: dict, dets: list[dict], max_dets: tuple[int, ...] | None = None) -> np.ndarray:
    """(12,) pycocotools COCOeval(bbox) stats; inputs are deep-copied (loadRes mutates)."""
    return pycoco_eval(gt, dets, max_dets).stats.copy()


def pycoco_eval(gt: dict, dets: list[dict], max_dets: tuple[int, ...] | None = None) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        res = coco.loadRes(copy.deepcopy(dets))
        ev = COCOeval(coco, res, "bbox")
        if max_dets is not None:
            ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def physical_copy(gt: dict, dets: list[dict], weights: np.ndarray) -> tuple[dict, list[dict]]:
    """Copy image ``i`` (sorted-id order) ``weights[i]`` times with new consecutive ids,
    together with its annotations (new annotation ids) and detections."""
    anns_of: dict[int, list] = {}
    dets_of: dict[int, list] = {}
    for a in gt["annotations"]:
        anns_of.setdefault(a["image_id"], []).append(a)
    for d in dets:
        dets_of.setdefault(d["image_id"], []).append(d)
    images, anns, out_dets = [], [], []
    for img, w in zip(sorted(gt["images"], key=lambda im: im["id"]), weights.tolist(), strict=True):
        for _ in range(w):
            new_id = len(images) + 1
            images.append({**img, "id": new_id})
            for a in anns_of.get(img["id"], []):
                anns.append({**a, "id": len(anns) + 1, "image_id": new_id})
            out_dets += [{**d, "image_id": new_id} for d in dets_of.get(img["id"], [])]
    return {"images": images, "annotations": anns, "categories": gt["categories"]}, out_dets


@pytest.fixture(scope="module")
def coco_case() -> tuple[dict, list[dict]]:
    return make_coco(seed=0)


@pytest.fixture(scope="session")
def make_case():
    """``make_coco(seed, ...)`` -> (ground-truth dict, results list)."""
    return make_coco


@pytest.fixture(scope="session")
def pycoco():
    """``pycoco_stats(gt, dets, max_dets=None)`` -> (12,) pycocotools stats."""
    return pycoco_stats


@pytest.fixture(scope="session")
def pycoco_evaluator():
    """``pycoco_eval(gt, dets, max_dets=None)`` -> the finished pycocotools COCOeval."""
    return pycoco_eval


@pytest.fixture(scope="session")
def copy_images():
    """``physical_copy(gt, dets, weights)`` -> (ground truth, results) with images copied."""
    return physical_copy

"""``sparse-rcnn predict --checkpoint CKPT --images DIR_OR_FILES --out dets.parquet``."""

from __future__ import annotations

import argparse

HELP = (
    "Run a checkpoint (ours or mmdetection's) on images and write COCO results "
    "(image_id, category_id, bbox xywh in original pixels, score) as .parquet or .json."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="checkpoint file (.pt or .pth)")
    parser.add_argument("--images", required=True, nargs="+", help="image files or folders")
    parser.add_argument("--out", required=True, help="output .parquet or .json")
    parser.add_argument(
        "--ann",
        help="COCO annotation file: image ids and categories come from it "
        "(default: ids from numeric file names, COCO's 80 categories)",
    )
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from sparse_rcnn.platform.checkpoints.native import load_model
    from sparse_rcnn.platform.data.categories import CategoryMap
    from sparse_rcnn.platform.data.image_io import list_images
    from sparse_rcnn.platform.engine.inference import image_ids_for, predict_files
    from sparse_rcnn.platform.evaluation.detections import save_detections

    out = Path(args.out)
    if out.suffix not in (".parquet", ".json"):
        raise ValueError(f"--out must end in .parquet or .json, got {out.name!r}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    paths = list_images(args.images)
    categories, name_to_id = CategoryMap.coco(), None
    if args.ann:
        try:
            ann = json.loads(Path(args.ann).read_text())
            name_to_id = {im["file_name"]: im["id"] for im in ann["images"]}
            cats = sorted(ann["categories"], key=lambda c: c["id"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"cannot read annotation file {args.ann}: {e}") from e
        categories = CategoryMap([c["id"] for c in cats], [c["name"] for c in cats])
    model, _ = load_model(args.checkpoint)
    if args.ann and len(categories) != model.cfg.num_classes:
        # A dataset with fewer categories than the model (e.g. a COCO subset): keep COCO's map
        # when its ids cover the annotation file's.
        if set(categories.category_ids) <= set(CategoryMap.coco().category_ids):
            categories = CategoryMap.coco()
    ids = image_ids_for(paths, name_to_id)
    dets = predict_files(
        model, paths, ids, categories, args.batch_size, args.device, not args.no_progress
    )
    save_detections(dets, out)
    print(f"wrote {len(dets)} detections for {len(paths)} images to {out}")
    return 0

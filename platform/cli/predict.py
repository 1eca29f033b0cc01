"""``sparse-rcnn predict --checkpoint CKPT --images DIR_OR_FILES --out dets.parquet``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from sparse_rcnn.platform.data.categories import CategoryMap

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
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... or mps")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="skip images that cannot be read or decoded, listing them (default: stop at the "
        "first one, naming it)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sparse_rcnn.platform.checkpoints.native import load_model
    from sparse_rcnn.platform.data.image_io import list_images
    from sparse_rcnn.platform.engine.inference import image_ids_for, predict_files
    from sparse_rcnn.platform.errors import InputError
    from sparse_rcnn.platform.evaluation.detections import save_detections
    from sparse_rcnn.platform.output_files import check_output_file

    out = Path(args.out)
    if out.suffix not in (".parquet", ".json"):
        raise InputError(f"--out must end in .parquet or .json, got {out.name!r}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    # Everything the user can get wrong is checked before the model is loaded and run.
    check_output_file(out, "--out")
    device = _device(args.device)
    paths = list_images(args.images)
    categories, name_to_id = _categories(args.ann)
    ids = image_ids_for(paths, name_to_id)
    model, _ = load_model(args.checkpoint)
    if args.ann and len(categories) != model.cfg.num_classes:
        # A dataset with fewer categories than the model (e.g. a COCO subset): keep COCO's map
        # when its ids cover the annotation file's.
        from sparse_rcnn.platform.data.categories import CategoryMap

        if set(categories.category_ids) <= set(CategoryMap.coco().category_ids):
            categories = CategoryMap.coco()
        else:
            raise InputError(
                f"--ann {args.ann}: its {len(categories)} categories are neither the model's "
                f"{model.cfg.num_classes} classes nor a subset of COCO's category ids"
            )
    result = predict_files(
        model, paths, ids, categories, args.batch_size, device, not args.no_progress,
        skip_bad_images=args.skip_bad_images,
    )  # fmt: skip
    for s in result.skipped:
        print(f"skipped: {s.reason}", file=sys.stderr)
    if len(result.skipped) == len(paths):
        raise InputError(f"none of the {len(paths)} images could be read; nothing written")
    save_detections(result.detections, out)
    read = len(paths) - len(result.skipped)
    note = f" ({len(result.skipped)} unreadable images skipped)" if result.skipped else ""
    print(f"wrote {len(result.detections)} detections for {read} images to {out}{note}")
    return 0


def _device(name: str) -> torch.device:
    """``--device`` as a torch device that exists on this machine, else one line saying why."""
    import torch

    from sparse_rcnn.platform.errors import InputError

    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"--device {name!r} is not supported; use cpu, cuda, cuda:N or mps")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: no CUDA GPU is available here; use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InputError(f"--device {name}: this machine has {count} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {name}: MPS is not available here; use --device cpu")
    return device


def _categories(ann: str | None) -> tuple[CategoryMap, dict[str, int] | None]:
    """The category map and ``file_name -> image id`` of ``--ann`` (COCO's 80 and None
    without it); a file that is not COCO-shaped raises InputError naming it."""
    import json
    from pathlib import Path

    from sparse_rcnn.platform.data.categories import CategoryMap
    from sparse_rcnn.platform.errors import InputError

    if ann is None:
        return CategoryMap.coco(), None
    try:
        data = json.loads(Path(ann).read_text())
        name_to_id = {im["file_name"]: int(im["id"]) for im in data["images"]}
        cats = sorted(data["categories"], key=lambda c: c["id"])
        return CategoryMap([c["id"] for c in cats], [c["name"] for c in cats]), name_to_id
    except OSError as e:
        raise InputError(f"cannot read annotation file {ann}: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"annotation file {ann} is not valid JSON: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InputError(
            f"annotation file {ann} is not COCO-shaped: it needs 'images' with 'id' and "
            "'file_name', and 'categories' with distinct 'id' and 'name'"
        ) from None

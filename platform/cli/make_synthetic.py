"""``sparse-rcnn make-synthetic OUT --images N --seed S``: write the synthetic shapes dataset.

Layout: ``OUT/annotations/instances_{train,val}.json`` and ``OUT/images/{train,val}/*.jpg``
(see :mod:`sparse_rcnn.platform.data.synthetic`). The same arguments write byte-identical files.
"""

from __future__ import annotations

import argparse
import time

from sparse_rcnn.platform.cli.main import UserError
from sparse_rcnn.platform.data.synthetic import DIFFICULTIES, dataset_categories, make_synthetic
from sparse_rcnn.platform.errors import OutputPathError, PlatformError

HELP = "write a synthetic COCO-format dataset (JSON + JPEG), deterministic from a seed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="output folder (created if missing)")
    parser.add_argument("--images", type=int, default=200, help="number of images (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="fraction of the images in the val split (default 0.2)",
    )
    parser.add_argument(
        "--min-size", type=int, default=320, help="smallest long side in px (default 320)"
    )
    parser.add_argument(
        "--max-size", type=int, default=640, help="largest long side in px (default 640)"
    )
    parser.add_argument(
        "--difficulty",
        choices=DIFFICULTIES,
        default="standard",
        help="easy: 3 categories, 1-3 large objects per image, no crowds or distractors "
        "(default standard)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the annotation files and image folders of an existing dataset in OUT",
    )


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    if not args.out.strip():
        raise UserError("OUT is empty; give the dataset folder")
    try:
        ds = make_synthetic(
            args.out,
            args.images,
            args.seed,
            val_fraction=args.val_fraction,
            min_size=args.min_size,
            max_size=args.max_size,
            difficulty=args.difficulty,
            overwrite=args.overwrite,
        )
    except FileExistsError as e:
        raise UserError(f"{e.args[0]}; pass --overwrite to replace it") from None
    except PlatformError:
        raise
    except OSError as e:  # a full disk, a folder that vanished: nothing to keep
        raise OutputPathError(f"cannot write the dataset to {args.out}: {e.strerror or e}") from e
    names = ", ".join(f"{c.category_id} {c.name}" for c in dataset_categories(args.difficulty))
    print(f"wrote {ds.num_train} train + {ds.num_val} val images to {ds.root} "
          f"in {time.perf_counter() - start:.1f} s")  # fmt: skip
    print(f"  train: {ds.train_ann}  images: {ds.train_images}")
    print(f"  val:   {ds.val_ann}  images: {ds.val_images}")
    print(f"  categories (COCO ids): {names}")
    return 0

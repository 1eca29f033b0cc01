"""``sparse-rcnn convert-checkpoint IN.pth OUT.pt``."""

from __future__ import annotations

import argparse

HELP = (
    "Convert an mmdetection Sparse R-CNN checkpoint to the platform's format (state_dict, "
    "resolved model config, provenance). The architecture is read off the checkpoint's shapes; "
    "--preset makes a mismatch an error."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="mmdetection checkpoint (.pth)")
    parser.add_argument("dst", help="output file (.pt)")
    parser.add_argument("--preset", help="require this model preset's architecture")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sparse_rcnn.models.config import preset
    from sparse_rcnn.platform.checkpoints.mmdet import CheckpointError
    from sparse_rcnn.platform.checkpoints.native import convert_mmdet_checkpoint
    from sparse_rcnn.platform.errors import InputError
    from sparse_rcnn.platform.output_files import check_output_file

    if Path(args.dst).resolve() == Path(args.src).resolve():
        raise InputError("output path equals the input path; refusing to overwrite the source")
    check_output_file(args.dst, create_parent=True)
    try:
        expect = preset(args.preset) if args.preset else None
    except KeyError as e:
        raise InputError(f"--preset: {e.args[0]}") from None
    try:
        cfg = convert_mmdet_checkpoint(args.src, args.dst, expect)
    except CheckpointError as e:
        if args.preset is None:
            raise
        raise CheckpointError(f"{e} (architecture of --preset {args.preset})") from e
    print(
        f"wrote {args.dst}: ResNet-{cfg.backbone_depth}, {cfg.num_proposals} proposals, "
        f"{cfg.num_stages} stages, {cfg.num_classes} classes"
    )
    return 0

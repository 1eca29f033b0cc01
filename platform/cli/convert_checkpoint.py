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
    from sparse_rcnn.platform.checkpoints.native import convert_mmdet_checkpoint

    if Path(args.dst).resolve() == Path(args.src).resolve():
        raise ValueError("output path equals the input path; refusing to overwrite the source")
    expect = preset(args.preset) if args.preset else None
    cfg = convert_mmdet_checkpoint(args.src, args.dst, expect)
    print(
        f"wrote {args.dst}: ResNet-{cfg.backbone_depth}, {cfg.num_proposals} proposals, "
        f"{cfg.num_stages} stages, {cfg.num_classes} classes"
    )
    return 0

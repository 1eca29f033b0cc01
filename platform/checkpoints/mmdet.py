"""mmdetection Sparse R-CNN checkpoints: safe loading, architecture inference, strict loading.

A checkpoint is a dict ``{"meta": ..., "state_dict": ...}`` whose keys equal our module names
(the model mirrors mmdetection's key layout), so loading needs no key map. Everything is read
with ``torch.load(weights_only=True)``: a checkpoint can never execute code.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sparse_rcnn.models.config import ModelConfig
from sparse_rcnn.platform.errors import PlatformError


class CheckpointError(PlatformError, ValueError):
    """The file is not a loadable Sparse R-CNN checkpoint for this model; the message says why."""


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True`` on CPU; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain containers "
            f"(weights_only=True): {str(e).splitlines()[0]}"
        ) from e
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint: {e}") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict, found {type(obj).__name__}")
    return obj


def state_dict_of(obj: dict[str, Any], path: str | Path = "<checkpoint>") -> dict[str, Tensor]:
    """The ``state_dict`` of an mmdetection checkpoint (or a bare state dict)."""
    sd = obj.get("state_dict", obj)
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: no state_dict of tensors found (keys: {list(obj)[:8]})")
    # DDP-wrapped saves prefix every key with "module.".
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
    return sd


_DEPTH_BY_LAYER3 = {2: 18, 6: 50, 23: 101}


def infer_model_config(sd: dict[str, Tensor], base: ModelConfig | None = None) -> ModelConfig:
    """Read the architecture off the checkpoint's keys and shapes: backbone depth, proposals,
    stages, width, classes, FFN and DynamicConv widths. Training-only fields come from ``base``
    (default: the mmdetection R-50 1x config)."""
    base = base or ModelConfig()
    if "rpn_head.init_proposal_bboxes.weight" not in sd:
        raise CheckpointError(
            "not a Sparse R-CNN checkpoint: key 'rpn_head.init_proposal_bboxes.weight' is "
            f"missing (first keys: {list(sd)[:5]})"
        )
    blocks3 = {int(m.group(1)) for k in sd if (m := re.match(r"backbone\.layer3\.(\d+)\.", k))}
    n3 = max(blocks3) + 1 if blocks3 else 0
    depth = _DEPTH_BY_LAYER3.get(n3)
    if n3 == 6 and "backbone.layer1.0.conv3.weight" not in sd:
        depth = 34  # BasicBlock with (3, 4, 6, 3) blocks
    if depth is None:
        raise CheckpointError(f"unsupported backbone: layer3 has {n3} blocks")
    stages = {int(m.group(1)) for k in sd if (m := re.match(r"roi_head\.bbox_head\.(\d+)\.", k))}
    if not stages:
        raise CheckpointError("not a Sparse R-CNN checkpoint: no roi_head.bbox_head.* keys")
    num_proposals, hidden = sd["rpn_head.init_proposal_features.weight"].shape
    h0 = "roi_head.bbox_head.0."
    num_classes = sd[h0 + "fc_cls.weight"].shape[0]
    ffn_dim = sd[h0 + "ffn.layers.0.0.weight"].shape[0]
    dyn = sd[h0 + "instance_interactive_conv.norm_in.weight"].shape[0]
    pooler = round((sd[h0 + "instance_interactive_conv.fc_layer.weight"].shape[1] / hidden) ** 0.5)
    reg_fcs = sum(1 for k in sd if re.fullmatch(re.escape(h0) + r"reg_fcs\.\d+\.weight", k))
    cls_fcs = sum(1 for k in sd if re.fullmatch(re.escape(h0) + r"cls_fcs\.\d+\.weight", k))
    return base.replace(
        backbone_depth=depth,
        hidden_dim=int(hidden),
        num_proposals=int(num_proposals),
        num_stages=max(stages) + 1,
        num_classes=int(num_classes),
        ffn_dim=int(ffn_dim),
        dynamic_channels=int(dyn),
        pooler_size=int(pooler),
        num_cls_fcs=cls_fcs // 2,  # Linear weights and LayerNorm weights both match
        num_reg_fcs=reg_fcs // 2,
    )


def load_state_dict_strict(model: nn.Module, sd: dict[str, Tensor], source: str = "") -> None:
    """Copy ``sd`` into ``model`` requiring exactly the same keys and shapes.

    Raises ``CheckpointError`` listing missing keys, unexpected keys and every shape mismatch
    as ``key: checkpoint (a, b) vs model (c, d)``.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and sd[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatch(es): " + "; ".join(mismatched[:10]))
        if missing:
            parts.append(f"{len(missing)} missing key(s): " + ", ".join(missing[:10]))
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): " + ", ".join(unexpected[:10]))
        where = f"{source}: " if source else ""
        raise CheckpointError(where + "checkpoint does not fit the model: " + " | ".join(parts))
    model.load_state_dict(sd, strict=True)

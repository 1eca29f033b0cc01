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
from sparse_rcnn.platform.errors import MissingFileError, PlatformError


class CheckpointError(PlatformError, ValueError):
    """The file is not a loadable Sparse R-CNN checkpoint for this model; the message says why."""


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True`` on CPU; errors name the file.

    Raises :class:`MissingFileError` for a missing path or a directory, and
    :class:`CheckpointError` for a file that ``torch.load`` cannot read or refuses.
    """
    path = Path(path)
    if path.is_dir():
        raise MissingFileError(f"checkpoint {path} is a directory; give the checkpoint file")
    if not path.is_file():
        raise MissingFileError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty, not a PyTorch checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not _is_zip(path):  # a text file, JSON, an image: the legacy unpickler chokes on it
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (torch.save file)") from e
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain containers "
            f"(weights_only=True): {_weights_only_reason(e)}"
        ) from e
    except Exception as e:
        # torch.load reports damaged or foreign bytes as KeyError, ValueError, RuntimeError,
        # EOFError, ...: any failure on a user's file means it is not a readable checkpoint.
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (torch.save file)") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict, found {type(obj).__name__}")
    return obj


def _is_zip(path: Path) -> bool:
    """Whether ``path`` starts like a zip archive (``torch.save``'s format since PyTorch 1.6)."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _weights_only_reason(e: pickle.UnpicklingError) -> str:
    """The line of torch's weights_only message that names what was refused."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    named = [line for line in lines if line.startswith("WeightsUnpickler error")]
    return (named or lines or ["unsupported content"])[0]


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


def infer_model_config(
    sd: dict[str, Tensor], base: ModelConfig | None = None, source: str = ""
) -> ModelConfig:
    """Read the architecture off the checkpoint's keys and shapes: backbone depth, proposals,
    stages, width, classes, FFN and DynamicConv widths. Training-only fields come from ``base``
    (default: the mmdetection R-50 1x config). ``source`` names the file in error messages.

    Raises :class:`CheckpointError` naming a missing key, a tensor of the wrong rank, or an
    architecture that is not a valid :class:`ModelConfig`.
    """
    base = base or ModelConfig()
    where = f"{source}: " if source else ""
    if "rpn_head.init_proposal_bboxes.weight" not in sd:
        raise CheckpointError(
            f"{where}not a Sparse R-CNN checkpoint: key 'rpn_head.init_proposal_bboxes.weight' "
            f"is missing (first keys: {list(sd)[:5]})"
        )

    def dims(key: str, rank: int) -> tuple[int, ...]:
        if key not in sd:
            raise CheckpointError(
                f"{where}checkpoint lacks key {key!r}, which every Sparse R-CNN checkpoint has"
            )
        shape = tuple(int(n) for n in sd[key].shape)
        if len(shape) != rank:
            raise CheckpointError(
                f"{where}{key} has shape {shape}; a Sparse R-CNN checkpoint has a {rank}-d "
                "tensor there"
            )
        return shape

    blocks3 = {int(m.group(1)) for k in sd if (m := re.match(r"backbone\.layer3\.(\d+)\.", k))}
    n3 = max(blocks3) + 1 if blocks3 else 0
    depth = _DEPTH_BY_LAYER3.get(n3)
    if n3 == 6 and "backbone.layer1.0.conv3.weight" not in sd:
        depth = 34  # BasicBlock with (3, 4, 6, 3) blocks
    if depth is None:
        raise CheckpointError(f"{where}unsupported backbone: layer3 has {n3} blocks")
    stages = {int(m.group(1)) for k in sd if (m := re.match(r"roi_head\.bbox_head\.(\d+)\.", k))}
    if not stages:
        raise CheckpointError(f"{where}not a Sparse R-CNN checkpoint: no roi_head.bbox_head.* keys")
    num_proposals, hidden = dims("rpn_head.init_proposal_features.weight", 2)
    h0 = "roi_head.bbox_head.0."
    (num_classes, _) = dims(h0 + "fc_cls.weight", 2)
    (ffn_dim, _) = dims(h0 + "ffn.layers.0.0.weight", 2)
    (dyn,) = dims(h0 + "instance_interactive_conv.norm_in.weight", 1)
    fc_in = dims(h0 + "instance_interactive_conv.fc_layer.weight", 2)[1]
    pooler = round((fc_in / max(hidden, 1)) ** 0.5)
    reg_fcs = sum(1 for k in sd if re.fullmatch(re.escape(h0) + r"reg_fcs\.\d+\.weight", k))
    cls_fcs = sum(1 for k in sd if re.fullmatch(re.escape(h0) + r"cls_fcs\.\d+\.weight", k))
    try:
        return base.replace(
            backbone_depth=depth,
            hidden_dim=hidden,
            num_proposals=num_proposals,
            num_stages=max(stages) + 1,
            num_classes=num_classes,
            ffn_dim=ffn_dim,
            dynamic_channels=dyn,
            pooler_size=int(pooler),
            num_cls_fcs=cls_fcs // 2,  # Linear weights and LayerNorm weights both match
            num_reg_fcs=reg_fcs // 2,
        )
    except ValueError as e:  # ModelConfig's own checks, e.g. a zero width
        raise CheckpointError(f"{where}the architecture read off the shapes is invalid: {e}") from e


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

"""One stage of the iterative head: mmdetection's DIIHead (Dynamic Instance Interactive head).

Key names match mmdetection checkpoints under ``roi_head.bbox_head.{i}.``.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from sparse_rcnn.models.dynamic_conv import DynamicConv


class _SelfAttention(nn.Module):
    """Multi-head self-attention with the residual inside (mmcv MultiheadAttention):
    ``x + attn(x, x, x)``; the attention module is stored as ``attn``."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=0.0)

    def forward(self, x: Tensor) -> Tensor:
        """x ``(N, B, C)`` (sequence first) -> ``(N, B, C)``."""
        return x + self.attn(x, x, x, need_weights=False)[0]


class _FFN(nn.Module):
    """``x + Linear(ReLU(Linear(x)))``; parameters at ``layers.0.0`` and ``layers.1`` (mmcv FFN)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True)), nn.Linear(hidden, dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(x)


def _fc_stack(dim: int, count: int) -> nn.Sequential:
    """``count`` blocks of [Linear without bias, LayerNorm, ReLU] (indices 3k, 3k+1, 3k+2)."""
    layers: list[nn.Module] = []
    for _ in range(count):
        layers += [nn.Linear(dim, dim, bias=False), nn.LayerNorm(dim), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class DIIHead(nn.Module):
    """Self-attention -> DynamicConv with the RoI feature -> FFN -> class and box branches.

    Dropout is 0 in every reference config and is therefore omitted.
    """

    def __init__(
        self,
        num_classes: int = 80,
        hidden_dim: int = 256,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        dynamic_channels: int = 64,
        pooler_size: int = 7,
        num_cls_fcs: int = 1,
        num_reg_fcs: int = 3,
        prior_prob: float = 0.01,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.attention = _SelfAttention(hidden_dim, num_heads)
        self.attention_norm = nn.LayerNorm(hidden_dim)
        self.instance_interactive_conv = DynamicConv(hidden_dim, dynamic_channels, pooler_size)
        self.instance_interactive_conv_norm = nn.LayerNorm(hidden_dim)
        self.ffn = _FFN(hidden_dim, ffn_dim)
        self.ffn_norm = nn.LayerNorm(hidden_dim)
        self.cls_fcs = _fc_stack(hidden_dim, num_cls_fcs)
        self.fc_cls = nn.Linear(hidden_dim, num_classes)
        self.reg_fcs = _fc_stack(hidden_dim, num_reg_fcs)
        self.fc_reg = nn.Linear(hidden_dim, 4)
        self._init_weights(prior_prob)

    def _init_weights(self, prior_prob: float) -> None:
        # mmdetection: Xavier-uniform for every parameter with dim > 1, focal prior on the class
        # bias; 1-D parameters keep their defaults (attention biases are zeroed by PyTorch).
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        nn.init.constant_(self.fc_cls.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, roi_feat: Tensor, proposal_feat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """roi_feat ``(B*N, C, S, S)`` in proposal order (image-major), proposal_feat ``(B, N, C)``.

        Returns class logits ``(B, N, num_classes)``, box deltas ``(B, N, 4)`` (class-agnostic)
        and the updated object features ``(B, N, C)``.
        """
        b, n, c = proposal_feat.shape
        x = self.attention_norm(self.attention(proposal_feat.transpose(0, 1)))  # (N, B, C)
        x = x.transpose(0, 1).reshape(b * n, c)  # (B*N, C)
        x = self.instance_interactive_conv_norm(x + self.instance_interactive_conv(x, roi_feat))
        obj = self.ffn_norm(self.ffn(x))  # (B*N, C)
        logits = self.fc_cls(self.cls_fcs(obj)).view(b, n, self.num_classes)
        deltas = self.fc_reg(self.reg_fcs(obj)).view(b, n, 4)
        return logits, deltas, obj.view(b, n, c)

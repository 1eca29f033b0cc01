"""DynamicConv: the instance-interaction module of Sparse R-CNN (paper section 3.4)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DynamicConv(nn.Module):
    """Two 1x1 "convolutions" whose weights are generated from each proposal's feature.

    dynamic_layer maps the proposal feature (C) to the parameters of a (C x F) and an (F x C)
    matrix (first C*F outputs, row-major, then F*C). The RoI feature ``(C, S, S)`` is read as
    ``(S*S, C)`` (positions row-major), multiplied by both matrices with LayerNorm + ReLU after
    each, flattened position-major to ``S*S*C`` and projected to C by fc_layer + LayerNorm + ReLU.
    Key names match mmdetection (``dynamic_layer``, ``norm_in``, ``norm_out``, ``fc_layer``,
    ``fc_norm``).
    """

    def __init__(self, in_channels: int = 256, feat_channels: int = 64, pooler_size: int = 7):
        super().__init__()
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.num_params = in_channels * feat_channels
        self.dynamic_layer = nn.Linear(in_channels, 2 * self.num_params)
        self.norm_in = nn.LayerNorm(feat_channels)
        self.norm_out = nn.LayerNorm(in_channels)
        self.activation = nn.ReLU(inplace=True)
        self.fc_layer = nn.Linear(in_channels * pooler_size**2, in_channels)
        self.fc_norm = nn.LayerNorm(in_channels)

    def forward(self, proposal_feat: Tensor, roi_feat: Tensor) -> Tensor:
        """proposal_feat ``(K, C)``, roi_feat ``(K, C, S, S)`` -> ``(K, C)``."""
        k, c = proposal_feat.shape
        x = roi_feat.reshape(k, c, -1).permute(0, 2, 1)  # (K, S*S, C)
        params = self.dynamic_layer(proposal_feat)  # (K, 2*C*F)
        param_in = params[:, : self.num_params].view(k, c, self.feat_channels)  # (K, C, F)
        param_out = params[:, self.num_params :].view(k, self.feat_channels, c)  # (K, F, C)
        x = self.activation(self.norm_in(torch.bmm(x, param_in)))  # (K, S*S, F)
        x = self.activation(self.norm_out(torch.bmm(x, param_out)))  # (K, S*S, C)
        x = self.activation(self.fc_norm(self.fc_layer(x.flatten(1))))  # (K, C)
        return x

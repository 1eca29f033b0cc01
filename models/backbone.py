"""ResNet trunk and FPN neck with mmdetection semantics.

Module names match mmdetection's checkpoint keys (``backbone.layer1.0.conv1.weight``,
``neck.lateral_convs.0.conv.weight``) so reference checkpoints load without a key map.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from sparse_rcnn.models.vision import torchvision


def resnet10(weights: None = None) -> torchvision.models.ResNet:
    """ResNet-10: ResNet-18's BasicBlocks, one per stage instead of two. No published weights;
    for CPU demos and tests that train from scratch in minutes (about 40 % fewer FLOPs)."""
    if weights is not None:
        raise ValueError("ResNet-10 has no pretrained weights")
    return torchvision.models.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1])


# depth -> (torchvision constructor, channels of C2..C5)
RESNETS: dict[int, tuple] = {
    10: (resnet10, (64, 128, 256, 512)),
    18: (torchvision.models.resnet18, (64, 128, 256, 512)),
    34: (torchvision.models.resnet34, (64, 128, 256, 512)),
    50: (torchvision.models.resnet50, (256, 512, 1024, 2048)),
    101: (torchvision.models.resnet101, (256, 512, 1024, 2048)),
}


class ResNet(nn.Module):
    """torchvision ResNet ("pytorch" style: stride on the 3x3 conv) returning C2..C5.

    ``frozen_stages`` (mmdetection): -1 trains everything; 0 freezes the stem (conv1, bn1);
    k >= 1 also freezes layer1..layerk (requires_grad False, kept in eval mode).
    ``norm_eval``: every BatchNorm stays in eval mode (running statistics never
    update) while the affine parameters of unfrozen stages still train.

    Input ``(B, 3, H, W)``; output four maps with strides 4, 8, 16, 32.
    """

    def __init__(self, depth: int, frozen_stages: int = 1, norm_eval: bool = True):
        super().__init__()
        if depth not in RESNETS:
            raise ValueError(f"backbone depth {depth} is not one of {sorted(RESNETS)}")
        build, self.out_channels = RESNETS[depth]
        net = build(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self._freeze()

    def _frozen_modules(self) -> list[nn.Module]:
        stages = [nn.ModuleList([self.conv1, self.bn1]), self.layer1, self.layer2, self.layer3]
        return stages[: self.frozen_stages + 1] if self.frozen_stages >= 0 else []

    def _freeze(self) -> None:
        for m in self._frozen_modules():
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNet:
        super().train(mode)
        for m in self._frozen_modules():
            m.eval()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]


class _ConvModule(nn.Module):
    """A bare conv under the attribute ``conv`` (mmcv ConvModule without norm/activation)."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class FPN(nn.Module):
    """Feature pyramid: 1x1 laterals, nearest top-down upsample + add, 3x3 outputs.

    ``in_channels`` of C2..C5 -> four ``out_channels`` maps P2..P5 (no extra levels, no norm,
    no activation; Xavier-uniform conv weights, zero biases).
    """

    def __init__(self, in_channels: tuple[int, ...], out_channels: int):
        super().__init__()
        self.lateral_convs = nn.ModuleList(_ConvModule(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(
            _ConvModule(out_channels, out_channels, 3) for _ in in_channels
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest"
            )
        return [conv(x) for conv, x in zip(self.fpn_convs, laterals, strict=True)]

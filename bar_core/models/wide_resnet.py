"""Wide ResNets (Zagoruyko & Komodakis 2016), the family BAR was evaluated on: WRN-16-k.

Pre-activation blocks, with a gate after each BatchNorm:

    o = relu(bn1(x));  y = conv2(dropout(relu(bn2(conv1(o)))));  out = y + (x or shortcut(o))

bn1's gates choose which stream channels the block reads (R), bn2's its inner channels (M). conv2 has
no BN after it, so a pre-activation block writes every stream channel. The final BN before pooling is
gated too: it chooses the stream channels the classifier reads.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torchvision.models.resnet import conv1x1, conv3x3

NormLayer = Callable[[int], nn.Module]


class WideBasic(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, norm_layer: NormLayer, dropout: float = 0.0):
        super().__init__()
        self.bn1 = norm_layer(in_planes)
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn2 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = conv1x1(in_planes, planes, stride) if stride != 1 or in_planes != planes else None

    def forward(self, x: Tensor) -> Tensor:
        o = self.relu(self.bn1(x))
        y = self.conv2(self.dropout(self.relu(self.bn2(self.conv1(o)))))
        return y + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, in_channels: int, num_classes: int, norm_layer: NormLayer,
                 dropout: float = 0.0):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = conv3x3(in_channels, widths[0])
        stages, planes = [], widths[0]
        for i, out_planes in enumerate(widths[1:]):
            blocks = [WideBasic(planes if j == 0 else out_planes, out_planes, (1 if i == 0 else 2) if j == 0 else 1,
                                norm_layer, dropout) for j in range(n)]
            stages.append(nn.Sequential(*blocks))
            planes = out_planes
        self.layer1, self.layer2, self.layer3 = stages
        self.bn = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = self.relu(self.bn(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))

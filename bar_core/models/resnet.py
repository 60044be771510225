"""Residual networks with a gate after every BatchNorm.

CIFAR-style ResNets (He et al. 2016, depth 6n + 2, widths 16/32/64) and torchvision's resnet18 share
torchvision's `BasicBlock` (conv1, bn1, conv2, bn2, optional downsample), so connectivity analysis and
materialisation handle one post-activation block type:

    y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))

With gated BNs, bn1's gates choose the block's inner channels M, bn2's choose which stream channels
it writes W, and a projection shortcut's BN gates choose which channels the new stream starts with.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, conv1x1, conv3x3
from torchvision.models.resnet import resnet18 as tv_resnet18

NormLayer = Callable[[int], nn.Module]


class CifarResNet(nn.Module):
    """ResNet for small images: a 3×3 stem, three stages of `blocks_per_stage` BasicBlocks at widths
    w, 2w, 4w (stride 2 between stages, 1×1 projection shortcuts), global pooling and a linear head."""

    def __init__(self, blocks_per_stage: int, in_channels: int, num_classes: int, norm_layer: NormLayer,
                 width: int = 16):
        super().__init__()
        self.conv1 = conv3x3(in_channels, width)
        self.bn1 = norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        stages, planes = [], width
        for i, out_planes in enumerate((width, 2 * width, 4 * width)):
            stages.append(self._stage(planes, out_planes, blocks_per_stage, 1 if i == 0 else 2, norm_layer))
            planes = out_planes
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes, num_classes)
        _init_weights(self)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int, norm_layer: NormLayer) -> nn.Sequential:
        layers = []
        for j in range(blocks):
            downsample = None
            if j == 0 and (stride != 1 or in_planes != planes):
                downsample = nn.Sequential(conv1x1(in_planes, planes, stride), norm_layer(planes))
            layers.append(BasicBlock(in_planes if j == 0 else planes, planes, stride if j == 0 else 1,
                                     downsample, norm_layer=norm_layer))
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def cifar_resnet(depth: int, in_channels: int, num_classes: int, norm_layer: NormLayer) -> CifarResNet:
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
    return CifarResNet((depth - 2) // 6, in_channels, num_classes, norm_layer)


def torchvision_resnet18(in_channels: int, num_classes: int, norm_layer: NormLayer) -> nn.Module:
    """torchvision's resnet18 (random init, no download) with our norm layer after every conv.

    Its 7×7 stride-2 stem and max-pool shrink a 28×28 input to 1×1 by layer4, which still runs."""
    model = tv_resnet18(weights=None, num_classes=num_classes, norm_layer=norm_layer)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

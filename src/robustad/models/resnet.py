"""ResNet-18 with a CIFAR stem (small images) or an ImageNet stem (224 px), and a width multiplier.

torchvision's ResNet has no width multiplier for its BasicBlock and would pull in torchvision,
so the backbone is written here; it follows the standard ResNet-18 layout (2-2-2-2 blocks).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))

    def fold_batchnorm_(self) -> None:
        """Fold each BatchNorm (eval statistics) into the convolution before it, in place."""
        self.conv1, self.bn1 = fuse_conv_bn_eval(self.conv1, self.bn1), nn.Identity()
        self.conv2, self.bn2 = fuse_conv_bn_eval(self.conv2, self.bn2), nn.Identity()
        _fold_sequential_(self.shortcut)


class ResNet18(nn.Module):
    """ResNet-18 encoder F: images [N,C,H,W] -> features [N, 8*width].

    stem="cifar": 3x3 conv, stride 1, no max-pool (for 28-64 px inputs).
    stem="imagenet": 7x7 conv, stride 2, then 3x3 max-pool (for 224 px inputs).
    """

    def __init__(self, in_channels: int = 3, width: int = 64, stem: str = "cifar"):
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        self.in_channels = in_channels
        self.width = width
        if stem == "cifar":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.MaxPool2d(3, 2, 1),
            )
        widths = [width, 2 * width, 4 * width, 8 * width]
        layers, in_planes = [], width
        for i, planes in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1)))
            in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.feature_dim = widths[-1]
        self.memory_format = torch.contiguous_format  # folded copies run channels-last (see folded)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.memory_format is torch.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.layers(self.stem(x))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)

    def folded(self) -> "ResNet18":
        """An eval-mode copy with every BatchNorm folded into its convolution, its weights and
        activations in the channels-last layout: the same outputs and input gradients up to float
        rounding in 25-40 % less time on an AVX2 CPU (BENCHMARKS.md). For inference and attacks on
        a trained network; it does not train (there are no batch statistics left, and the layout is
        kept out of training: its weight gradients were wrong at width 4 on CPU)."""
        out = copy.deepcopy(self).eval()
        _fold_sequential_(out.stem)
        for block in out.modules():
            if isinstance(block, BasicBlock):
                block.fold_batchnorm_()
        out = out.to(memory_format=torch.channels_last)
        out.memory_format = torch.channels_last
        return out.requires_grad_(False)


def _fold_sequential_(seq: nn.Sequential) -> None:
    for i in range(len(seq) - 1):
        if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
            seq[i], seq[i + 1] = fuse_conv_bn_eval(seq[i], seq[i + 1]), nn.Identity()

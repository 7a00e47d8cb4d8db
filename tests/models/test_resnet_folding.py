"""BatchNorm folded into the convolutions for inference: the same outputs, the original untouched."""

import pytest
import torch
from torch import nn

from robustad.models.heads import ShiftContrastiveNet
from robustad.models.resnet import ResNet18


def _trained_looking(net: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, as training leaves them."""
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return net.eval()


@pytest.mark.parametrize("stem, size, width", [("cifar", 16, 8), ("imagenet", 64, 8), ("cifar", 16, 4), ("cifar", 12, 16)])
def test_a_folded_resnet_gives_the_same_features_and_gradients(stem, size, width):
    torch.manual_seed(0)
    net = _trained_looking(ResNet18(in_channels=3, width=width, stem=stem))
    folded = net.folded()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    # the copy runs channels-last (faster on CPU); the trained network keeps the default layout
    convs = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert all(m.weight.is_contiguous() for m in net.modules() if isinstance(m, nn.Conv2d))
    x = torch.rand(4, 3, size, size, requires_grad=True)
    y = net(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    x2 = x.detach().clone().requires_grad_(True)
    y2 = folded(x2)
    (grad2,) = torch.autograd.grad(y2.sum(), x2)
    assert torch.allclose(y, y2, atol=1e-5, rtol=1e-4)
    assert torch.allclose(grad, grad2, atol=1e-5, rtol=1e-4)
    # the trained network keeps its BatchNorms and its mode
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 20 and not net.training


def test_a_folded_shift_network_shares_its_heads_and_leaves_the_original_as_it_was():
    net = ShiftContrastiveNet(1, 4, width=4, projection_dim=8).train()
    _trained_looking(net.encoder).train()
    folded = net.folded()
    assert net.training and net.encoder.training  # folding does not switch the trained network to eval
    assert folded.projection is net.projection and folded.shift_head is net.shift_head
    net.eval()
    x = torch.rand(3, 1, 12, 12)
    a, b = net(x), folded(x)
    assert torch.allclose(a.projection, b.projection, atol=1e-5)
    assert torch.allclose(a.shift_logits, b.shift_logits, atol=1e-5)

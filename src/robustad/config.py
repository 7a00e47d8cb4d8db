"""Typed configuration: dataclasses with defaults, presets as YAML files, dotted overrides.

A preset is data (``src/robustad/configs/<name>.yaml``), never a code path. Any field can be
overridden with ``section.field=value`` (values are parsed as YAML, so ``8/255`` stays a string
and is turned into a number by :func:`parse_eps`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, fields, is_dataclass
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from robustad.errors import ConfigError

# the device names a config (or load(device=...)) may give
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?|mps"


def parse_eps(value: Any, name: str = "eps") -> float:
    """Turn ``8/255``, ``"0.03"`` or ``0.03`` into a float in [0, 1]."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number like 8/255 or 0.031, got {value!r}")
    try:
        number = float(Fraction(str(value).strip())) if isinstance(value, str) else float(value)
    except (ValueError, ZeroDivisionError, OverflowError, TypeError):
        raise ConfigError(f"{name} must be a number like 8/255 or 0.031, got {value!r}") from None
    if not 0.0 <= number <= 1.0 or number != number:
        raise ConfigError(
            f"{name}={value!r} is outside [0, 1]; images live in [0, 1], so an L-inf budget above 1 "
            "means nothing. Typical values: 8/255 for 32 px images, 2/255 for 224 px images."
        )
    return number


def format_eps(eps: float) -> str:
    """An eps for people: ``8/255`` when it is a whole number of 255ths, else the float (0.03, not 8/255)."""
    if eps == 0:
        return "0"
    steps = eps * 255
    return f"{round(steps)}/255" if abs(steps - round(steps)) < 1e-6 else f"{eps:.4g}"


# upper bounds on sizes a config (or an edited detector.json) may ask for, so that no file can make
# robustad allocate without limit; each is far above what the presets use
MAX_IMAGE_SIZE = 4096  # pixels per side after resizing
MAX_MODEL_WIDTH = 256  # ResNet-18 width multiplier (64 = the standard network, the paper's)
MAX_PROJECTION_DIM = 4096
MAX_SCORE_VIEWS = 64


def check_upper_bound(name: str, value: int | None, limit: int) -> None:
    if value is not None and value > limit:
        raise ConfigError(f"{name} is {value}, above the largest robustad accepts ({limit}); use a smaller value")


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    steps_per_epoch: int | None = None  # None -> one pass over the normal images
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-6
    warmup_epochs: int = 1
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    checkpoint_every: int = 1  # epochs between atomic checkpoints

    def validate(self) -> "TrainConfig":
        if self.batch_size < 2:
            raise ConfigError(f"train.batch_size must be >= 2, got {self.batch_size}")
        if self.epochs < 1:
            raise ConfigError(f"train.epochs must be >= 1, got {self.epochs}")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"train.optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if not self.lr > 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if not re.fullmatch(DEVICE_PATTERN, str(self.device)):
            raise ConfigError(f"train.device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        if self.checkpoint_every < 1:
            raise ConfigError(f"train.checkpoint_every must be >= 1 (epochs), got {self.checkpoint_every}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError(f"train.steps_per_epoch must be >= 1, or null for one pass over the images; "
                              f"got {self.steps_per_epoch}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"train.momentum must be in [0, 1), got {self.momentum}")
        if not 0.0 <= self.weight_decay < 1.0:
            raise ConfigError(f"train.weight_decay must be in [0, 1), got {self.weight_decay}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"train.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.seed < 0:
            raise ConfigError(f"train.seed must be >= 0, got {self.seed}")
        return self


@dataclass
class EvaluationConfig:
    # The data set's customary test budget: 8/255 for 32 px images, 2/255 for 224 px.
    eps: Any = "8/255"
    steps: int = 50


@dataclass
class BackboneConfig:
    width: int = 16  # ResNet-18 width multiplier (64 = the standard network)
    stem: str = "cifar"  # "cifar" for small images, "imagenet" for 224 px


@dataclass
class CalibrationConfig:
    holdout_fraction: float = 0.1  # normal images held out to calibrate the threshold
    target_fpr: float = 0.05
    batch_size: int = 256  # images scored at once


MAX_CONFIG_BYTES = 1_000_000


def load_yaml(text: str, source: str) -> Any:
    """yaml.safe_load, refusing anchors and aliases: a config never needs them, and a few nested
    aliases expand to billions of strings (a "billion laughs" file) once anything walks the result."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise ConfigError(f"{source} uses YAML anchors or aliases (&name / *name), which robustad configs "
                                  "do not accept: write the values out")
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InvalidYAMLError(f"{source} is not valid YAML: {' '.join(str(err).split())}") from None


class InvalidYAMLError(ConfigError):
    """Text that does not parse as YAML (an override's value is then taken as a plain string)."""


def preset_data(name: str, chain: tuple[str, ...]) -> dict[str, Any]:
    if name not in list_presets():
        raise ConfigError(f"unknown preset {name!r}; available presets: {', '.join(list_presets())}")
    text = resources.files("robustad.configs").joinpath(f"{name}.yaml").read_text()
    return resolve_base(load_yaml(text, f"preset {name}") or {}, f"preset {name}", (*chain, name))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML config file's settings, with its ``base`` preset merged in; size-capped and UTF-8 only."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if (size := path.stat().st_size) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is {size:,} bytes; a robustad config is a few hundred "
                          f"(the limit is {MAX_CONFIG_BYTES:,}): point --preset at the right file")
    try:
        data = load_yaml(path.read_text(), f"config file {path}") or {}
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; save it as UTF-8 YAML") from None
    return resolve_base(data, str(path), ())


def preset_or_file(name: str) -> tuple[dict[str, Any], str]:
    """(settings, where they came from) for a preset name or, when `name` looks like a path, a YAML file."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        return read_config_file(name), str(name)
    return preset_data(name, ()), f"preset {name}"


def resolve_base(data: dict[str, Any], source: str, chain: tuple[str, ...]) -> dict[str, Any]:
    """A config may start from another preset (``base: cpu-small``) and change some fields."""
    if not isinstance(data, dict) or "base" not in data:
        return data
    data = dict(data)
    base = data.pop("base")
    if not isinstance(base, str):
        raise ConfigError(f"{source}: base must be a preset name, got {base!r}")
    if base in chain:
        raise ConfigError(f"{source}: presets refer to each other in a loop: {' -> '.join((*chain, base))}")
    return deep_merge(preset_data(base, chain), data)


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def list_presets() -> list[str]:
    folder = resources.files("robustad.configs")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def set_config_key(data: dict[str, Any], key: str, value: Any, cls: type) -> None:
    """Set dotted `key` (e.g. "train.epochs") in a config dict of `cls`; an unknown key is a ConfigError."""
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"unknown config key {key!r}; known keys: {', '.join(config_keys(cls))}")
        node = node[part]
    if parts[-1] not in node or isinstance(node[parts[-1]], dict):
        raise ConfigError(f"unknown config key {key!r}; known keys: {', '.join(config_keys(cls))}")
    node[parts[-1]] = value


def config_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    hints = get_type_hints(cls)
    for f in fields(cls):
        if is_dataclass(hints[f.name]):
            keys += config_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def parse_overrides(overrides: dict[str, Any] | list[str] | None) -> dict[str, Any]:
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    if isinstance(overrides, str):  # one "section.field=value", not a sequence of one-letter items
        overrides = [overrides]
    parsed = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.field=value, e.g. train.epochs=5")
        key, raw = item.split("=", 1)
        try:
            parsed[key.strip()] = load_yaml(raw, f"override {key.strip()}")
        except InvalidYAMLError:
            parsed[key.strip()] = raw
    return parsed


def build_config(cls: type, data: Any, source: str, prefix: str = ""):
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: section {prefix.rstrip('.') or 'top level'} must be a mapping, got {data!r}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(prefix + k for k in sorted(unknown))}; "
            f"known keys here: {', '.join(sorted(prefix + k for k in known))}"
        )
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if is_dataclass(hints[f.name]):
            kwargs[f.name] = build_config(hints[f.name], value, source, f"{prefix}{f.name}.")
        else:
            kwargs[f.name] = _coerce(value, hints[f.name], f"{prefix}{f.name}", source)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    text = str(hint)
    if value is None:
        if "None" in text or hint is Any:
            return None
        raise ConfigError(f"{source}: {key} may not be empty")
    try:
        if hint is bool:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if hint is int or text == "int | None":
            if isinstance(value, bool) or float(value) != int(value):
                raise TypeError
            return int(value)
        if hint is float:
            return float(Fraction(value)) if isinstance(value, str) else float(value)
        if hint is str:
            if not isinstance(value, str):
                raise TypeError
            return value
        if text.startswith("tuple"):
            return tuple(float(v) for v in value)
        if text.startswith("list[int]"):
            if isinstance(value, (str, bytes)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise TypeError
            return [int(v) for v in value]
        if text.startswith("list"):
            if isinstance(value, str):
                value = [value]
            return [str(v) for v in value]
    except (TypeError, ValueError, OverflowError, ZeroDivisionError):
        plain = "[" not in text and "|" not in text
        expected = getattr(hint, "__name__", text) if plain else text.replace("typing.", "")  # int, not <class 'int'>
        raise ConfigError(f"{source}: {key}={value!r} has the wrong type (expected {expected})") from None
    return value


# --- a method's config --------------------------------------------------------------------------
class ConfigMixin:
    """to_dict / from_dict / from_yaml / with_overrides for a method's dataclass config.

    Fields typed as a plain dict (not a dataclass) take free-form dotted keys below them:
    ``backbone_overrides.train.epochs=2`` stores ``{"train.epochs": 2}`` in ``backbone_overrides``.
    """

    def validate(self):
        return self

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config"):
        # missing keys take this class's defaults, not those of the shared section classes
        if isinstance(data, dict):
            data = deep_merge(cls().to_dict(), data)
        return build_config(cls, data, source).validate()

    @classmethod
    def from_yaml(cls, path: str | Path):
        """The config in a YAML file (it may start from a preset: ``base: cpu-small``)."""
        return cls.from_dict(read_config_file(path), source=str(path))

    @classmethod
    def from_preset(cls, name: str):
        """A preset by name (``mnist-cpu``), or a YAML file when `name` is a path."""
        data, source = preset_or_file(name)
        return cls.from_dict(data, source=source)

    def with_overrides(self, overrides: dict[str, Any] | list[str] | None):
        cls = type(self)
        data = self.to_dict()
        hints = get_type_hints(cls)
        free_form = {f.name for f in fields(cls) if str(hints[f.name]).startswith("dict")}
        for key, value in parse_overrides(overrides).items():
            parts = key.split(".")
            if parts[0] in free_form:
                if len(parts) == 1:
                    data[parts[0]] = value
                else:
                    data[parts[0]] = {**(data[parts[0]] or {}), ".".join(parts[1:]): value}
                continue
            set_config_key(data, key, value, cls)
        return cls.from_dict(data, source="overrides")


def known_part(cls: type, data: Any) -> Any:
    """The part of a config mapping that `cls` has fields for, at every level; the rest is dropped."""
    if not isinstance(data, dict):
        return data
    hints = get_type_hints(cls)
    return {f.name: known_part(hints[f.name], data[f.name]) if is_dataclass(hints[f.name]) else data[f.name]
            for f in fields(cls) if f.name in data}


@dataclass
class Budget(ConfigMixin):
    """What every method trained from one preset shares, so that methods compare at one budget: image
    size, backbone family, training budget, threshold calibration and test budget.

    Presets are written for COBRA; every other method reads only these keys of them.
    """

    image_size: int | None = None
    model: BackboneConfig = dataclasses.field(default_factory=BackboneConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    score: CalibrationConfig = dataclasses.field(default_factory=CalibrationConfig)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)

    def validate(self) -> "Budget":
        self.train.validate()
        self.evaluation.eps = parse_eps(self.evaluation.eps, "evaluation.eps")
        return self

    @classmethod
    def from_preset(cls, name: str) -> "Budget":
        data, source = preset_or_file(name)
        return cls.from_dict(known_part(cls, data), source=source)

    def calibration(self) -> CalibrationConfig:
        """A copy of the hold-out and threshold settings, for a method's own config."""
        return dataclasses.replace(self.score)

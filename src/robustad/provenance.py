"""Where a result came from: one record (RunRecord: method, config, images, measurement, versions),
its difference from another in words, and the library versions.

Training resume (a checkpoint resumes only its own run), the refusal to overwrite a finished detector
with another config or other images, and the benchmark's staleness check all compare RunRecords.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import robustad

CHECKPOINT_FORMAT = 1  # the layout of detector folders and training checkpoints


def library_versions() -> dict[str, str]:
    import kornia
    import sklearn

    return {
        "robustad": robustad.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "kornia": kornia.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }


def images_digest(x: torch.Tensor) -> str:
    """Content hash of a set of images: a run or detector recognises the images it was trained on."""
    data = x.detach().to("cpu", torch.float32).contiguous().numpy()
    return hashlib.sha256(data.data).hexdigest()[:16]


@dataclass(frozen=True)
class RunRecord:
    """What a result came from. A section one side does not know (None) is not compared.

    - method, config (JSON form: what reads back from a file): the detector asked for;
    - images: what it was trained on (count, channels, size, digest; or just some of them);
    - measurement: how it was measured (the benchmark's test-set limits and attacks);
    - version, format: robustad's version and checkpoint layout; world_size: training processes.
    """

    method: str | None = None
    config: dict[str, Any] | None = None
    images: dict[str, Any] | None = None
    measurement: dict[str, Any] | None = None
    version: str | None = None
    format: int | None = None
    world_size: int = 1
    # the config class's defaults (JSON form; never saved): a field that one record lacks (a record
    # written before the field existed) compares as this default
    config_defaults: dict[str, Any] | None = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def of_training(cls, method: str, config: dict, images: torch.Tensor, world_size: int = 1,
                    defaults: dict | None = None) -> RunRecord:
        """A training run: a checkpoint resumes only a run with the same record.

        The score and evaluation sections are left out: they do not change training. `defaults`, the
        config class's default config, lets a checkpoint written before a field was added resume when
        the run asks for that field's default.
        """
        return cls(
            method=method, format=CHECKPOINT_FORMAT, version=robustad.__version__, world_size=world_size,
            config=_training_part(config), config_defaults=_training_part(defaults) if defaults else None,
            images={"count": int(images.shape[0]), "channels": int(images.shape[1]),
                    "size": [int(images.shape[-2]), int(images.shape[-1])], "digest": images_digest(images)},
        )

    def with_world_size(self, world_size: int) -> RunRecord:
        return dataclasses.replace(self, world_size=world_size)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (a training checkpoint's "run"); unknown sections and one process are left out."""
        out = {"method": self.method, "format": self.format, "version": self.version, "config": self.config,
               "images": self.images, "measurement": self.measurement}
        out = {k: v for k, v in out.items() if v is not None}
        if self.world_size != 1:
            out["world_size"] = self.world_size
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """A record read back from JSON; a section it lacks is unknown. ValueError if it is not one."""
        if not isinstance(data, dict):
            raise ValueError(f"a run record is a JSON object, not {type(data).__name__}")
        fields = {k: data.get(k) for k in ("method", "config", "images", "measurement", "version", "format")}
        for key in ("config", "images", "measurement"):
            if fields[key] is not None and not isinstance(fields[key], dict):
                raise ValueError(f"the run record's {key} is not a JSON object")
        world_size = data.get("world_size", 1)
        if isinstance(world_size, bool) or not isinstance(world_size, int):
            raise ValueError(f"the run record's world_size is not a whole number: {world_size!r}")
        return cls(**fields, world_size=world_size)

    def changes(self, wanted: RunRecord, strict: bool = False) -> list[str]:
        """How `wanted` differs from this record, as "field: this -> wanted" (config fields as
        "config.a.b", images as "images.x", measurement as "suite.x"); empty when they agree.
        strict: a section only one side knows is a difference too (a training checkpoint must match
        its run exactly)."""
        out = []
        for name in ("method", "format", "version", "world_size"):
            old, new = getattr(self, name), getattr(wanted, name)
            if (strict or (old is not None and new is not None)) and old != new:
                out.append(f"{name}: {'<absent>' if old is None else old} -> {'<absent>' if new is None else new}")
        for name, prefix in (("config", "config."), ("images", "images."), ("measurement", "suite.")):
            old, new = getattr(self, name), getattr(wanted, name)
            if old is not None and new is not None:
                defaults = (self.config_defaults or wanted.config_defaults) if name == "config" else None
                out += config_changes(old, new, prefix, defaults)
            elif strict and (old is not None or new is not None):
                out.append(f"{name}: {'<absent>' if old is None else 'recorded'} -> {'<absent>' if new is None else 'recorded'}")
        return out


def _training_part(config: dict[str, Any]) -> dict[str, Any]:
    return json_form({k: v for k, v in config.items() if k not in ("score", "evaluation")})


def config_changes(saved: dict[str, Any], wanted: dict[str, Any], prefix: str = "",
                   defaults: dict[str, Any] | None = None) -> list[str]:
    """Dotted fields where two configs (as JSON dicts) differ, as "field: saved -> wanted". A field
    that one side lacks takes its value in `defaults` where that has one."""
    defaults = defaults if isinstance(defaults, dict) else {}
    changes = []
    for key in sorted(set(saved) | set(wanted), key=str):
        old, new = saved.get(key, defaults.get(key, "<absent>")), wanted.get(key, defaults.get(key, "<absent>"))
        if isinstance(old, dict) and isinstance(new, dict):
            changes += config_changes(old, new, f"{prefix}{key}.", defaults.get(key))
        elif old != new:
            changes.append(f"{prefix}{key}: {old} -> {new}")
    return changes


def summarize_changes(changes: list[str], limit: int = 5) -> str:
    """The first `limit` config changes joined for a one-line message, with a count of the rest."""
    more = len(changes) - limit
    return "; ".join(changes[:limit]) + (f"; and {more} more" if more > 0 else "")


def json_form(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict as it reads back from JSON (tuples become lists), so it compares with a saved one."""
    return json.loads(json.dumps(config, default=float))

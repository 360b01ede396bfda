"""The model contract that every gentools architecture follows.

A model is an `nn.Module` built from a `@dataclass` config. It knows how to compute
its loss and how to generate; it does not know how it is trained or shown.

- `loss(batch) -> dict`: "loss" is minimised, every other key is a logged metric.
- `sample(n, generator=None, **kw)`: the model's own way to generate.
- likelihood models add `nll(batch)`: nats per example.
- `training_step(batch, optimize)`: one optimisation step. The default minimises
  `loss`; a model with several optimizers (the GAN) overrides it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

# optimize(loss, name="main") -> None: backward, clip and step the named optimizer.
Optimize = Callable[..., None]


class GenerativeModel(nn.Module):
    """Base class: holds the config, builds named sizes, gives the default training step."""

    Config: ClassVar[type]  # the model's @dataclass config
    sizes: ClassVar[dict[str, dict[str, Any]]] = {}  # named sizes: tiny, default, gpu

    def __init__(self, config: Any):
        super().__init__()
        self.config = config

    @classmethod
    def from_size(cls, size: str = "default", **overrides: Any) -> GenerativeModel:
        """Build the model at a named size, with config fields overridden by keyword."""
        if size not in cls.sizes:
            raise ValueError(
                f"unknown size {size!r} for {cls.__name__}: use {', '.join(cls.sizes)}"
            )
        return cls(cls.Config(**{**cls.sizes[size], **overrides}))

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.config)

    def configure_optimizers(
        self, lr: float, weight_decay: float
    ) -> dict[str, torch.optim.Optimizer]:
        """One AdamW over all parameters; override for several optimizers."""
        return {"main": torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=weight_decay)}

    def training_step(self, batch: Any, optimize: Optimize) -> dict[str, torch.Tensor]:
        out = self.loss(batch)
        optimize(out["loss"])
        return out

    def loss(self, batch: Any) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None, **kw: Any) -> torch.Tensor:
        raise NotImplementedError

    def num_parameters(self) -> int:
        """The numbers training updates: parameters with requires_grad, so a frozen copy (the
        diffusion model's weight average) is not counted twice."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def labels_seen(self) -> bool:
        """Does training see the class labels? A config with num_classes > 0 is conditional."""
        return getattr(self.config, "num_classes", 0) > 0

    @property
    def averaged_weights(self) -> bool:
        """Do evaluation and sampling use a moving average of the weights (EMA)? None here."""
        return False

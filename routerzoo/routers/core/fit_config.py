"""The fit fields every gradient-trained router config shares, declared and checked once.

:class:`FitLoopConfig` is a minibatch fit with early stopping (the ``mf`` router's plain torch
loop); :class:`NetworkFitConfig` adds where a Lightning fit runs (MLP, scalarised, Zooter,
RouterDC, fine-tuned encoder). A kind's config subclasses one and re-declares a field to change its
default; its own ``__post_init__`` calls ``super().__post_init__()`` first.
"""

from __future__ import annotations

from dataclasses import dataclass

from routerzoo.errors import ConfigError

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


@dataclass
class FitLoopConfig:
    """Optimiser and stopping fields of a minibatch fit.

    Attributes:
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        batch_size: examples per step.
        max_epochs: upper bound on epochs.
        patience: epochs without validation improvement before stopping (the best epoch is kept).
    """

    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 128
    max_epochs: int = 60
    patience: int = 6

    def __post_init__(self):
        if not self.lr > 0:
            raise ConfigError(f"router.lr must be > 0, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ConfigError(f"router.weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("batch_size", "max_epochs", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"router.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class NetworkFitConfig(FitLoopConfig):
    """:class:`FitLoopConfig` and the Lightning fields of where the fit runs.

    Attributes:
        accelerator: Lightning accelerator ("auto", "cpu", "gpu", "cuda", "mps").
        devices: Lightning devices (1 by default; e.g. 4 with strategy "ddp" on a multi-GPU box).
        strategy: Lightning strategy ("auto", "ddp", ...).
    """

    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"

    def __post_init__(self):
        super().__post_init__()
        # whether this machine has the accelerator is checked at fit time
        if self.accelerator not in ACCELERATORS:
            raise ConfigError(f"router.accelerator must be one of {list(ACCELERATORS)}, got {self.accelerator!r}")
        if isinstance(self.devices, int) and self.devices < 1 and self.devices != -1:
            raise ConfigError(f"router.devices must be >= 1, -1 (all) or 'auto', got {self.devices}")
        if isinstance(self.devices, str) and self.devices != "auto" and not all(
                p.strip().lstrip("-").isdigit() for p in self.devices.split(",") if p.strip()):
            raise ConfigError(f"router.devices must be a number, a list like '0,1', or 'auto', got {self.devices!r}")


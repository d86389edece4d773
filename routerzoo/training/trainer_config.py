"""``--trainer.*``: Lightning settings for every Lightning-trained router, and DDP worker detection.

Each Lightning-trained router has its own ``accelerator`` / ``devices`` / ``strategy`` (and, where it
matters, ``precision``) in its typed config; ``--trainer.*`` overrides them for whichever router is
trained, so one command line scales any family: ``routerzoo train --router mlp ... --trainer.strategy
ddp --trainer.devices 2``. No Lightning import here: the train CLI builds this for every router.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from routerzoo.errors import ConfigError


@dataclass
class TrainerConfig:
    """Lightning Trainer settings applied to any Lightning-trained router (None: the router's own).

    Attributes:
        accelerator: "auto", "cpu", "gpu", "cuda" or "mps".
        devices: devices per node (e.g. 2; with strategy "ddp" on CPU, two processes).
        strategy: "auto", "ddp", "ddp_find_unused_parameters_true", "fsdp", ...
        precision: "32-true", "bf16-mixed", "16-mixed", ... (routers that train in mixed precision).
        num_nodes: machines taking part (multi-node DDP; launch one process per node with torchrun
            or a cluster launcher).
    """

    accelerator: str | None = None
    devices: int | str | None = None
    strategy: str | None = None
    precision: str | None = None
    num_nodes: int = 1

    def __post_init__(self):
        if isinstance(self.devices, int) and self.devices < 1 and self.devices != -1:
            raise ConfigError(f"--trainer.devices must be >= 1, -1 (all) or 'auto', got {self.devices}")
        if self.num_nodes < 1:
            raise ConfigError(f"--trainer.num_nodes must be >= 1, got {self.num_nodes}")
        if self.accelerator is not None and self.accelerator not in ("auto", "cpu", "gpu", "cuda", "mps"):
            raise ConfigError(f"--trainer.accelerator must be auto, cpu, gpu, cuda or mps, got {self.accelerator!r}")

    def resolve(self, config) -> dict:
        """Trainer keywords: these settings where set, else the router config's own fields."""
        out = {"num_nodes": self.num_nodes}
        for name in ("accelerator", "devices", "strategy", "precision"):
            value = getattr(self, name)
            if value is None:
                value = getattr(config, name, None)
            if value is not None:
                out[name] = value
        return out


def ddp_worker() -> bool:
    """True in a DDP process other than global rank 0 (launched by Lightning or torchrun): such a
    process trains its share and leaves tracking, evaluation and the artifact to rank 0."""
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK"):
        if os.environ.get(var, "0") not in ("", "0"):
            return True
    return False

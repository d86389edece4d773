"""``--trainer.*``: Lightning settings for every Lightning-trained router, and DDP worker detection.

Each Lightning-trained router has its own ``accelerator`` / ``devices`` / ``strategy`` (and, where it
matters, ``precision``) in its typed config; ``--trainer.*`` overrides them for whichever router is
trained, so one command line scales any family: ``routerzoo train --router mlp ... --trainer.strategy
ddp --trainer.devices 2``. No Lightning import here: the train CLI builds this for every router.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from routerzoo.errors import ConfigError

#: what Lightning accepts, spelled out so a typo is one line naming the flag before any encoding
#: (Lightning itself would fail with a traceback after minutes of encoding)
PRECISIONS = ("auto", "64-true", "32-true", "16-true", "16-mixed", "bf16-true", "bf16-mixed", "transformer-engine",
              "transformer-engine-float16", "64", "32", "16", "bf16")
STRATEGIES = ("auto", "single_device", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "fsdp", "fsdp_cpu_offload",
              "deepspeed", "deepspeed_stage_1", "deepspeed_stage_2", "deepspeed_stage_2_offload", "deepspeed_stage_3",
              "deepspeed_stage_3_offload", "deepspeed_stage_3_offload_nvme", "xla", "xla_debug", "single_xla")
_DDP_VARIANTS = ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook")


def _strategy_ok(name: str) -> bool:
    if name in STRATEGIES:
        return True
    base, _, rest = name.partition("_find_unused_parameters_")
    return base in _DDP_VARIANTS and rest in ("true", "false")


def check_devices(devices, flag: str = "--trainer.devices") -> None:
    """``devices`` as Lightning takes it: an int >= 1 or -1, "auto", a count or an id list like "0,1"."""
    if isinstance(devices, bool):
        raise ConfigError(f"{flag} must be a number, a list like '0,1', or 'auto', got {devices!r}")
    if isinstance(devices, int):
        if devices < 1 and devices != -1:
            raise ConfigError(f"{flag} must be >= 1, -1 (all) or 'auto', got {devices}")
        return
    if isinstance(devices, (list, tuple)):
        if not devices or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices):
            raise ConfigError(f"{flag} as a list names device ids >= 0, got {devices!r}")
        return
    text = str(devices).strip()
    if text == "auto":
        return
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() or (p == "-1" and len(parts) == 1) for p in parts) or (len(parts) == 1 and parts[0] == "0"):
        raise ConfigError(f"{flag} must be a number >= 1, -1 (all), a list of device ids like '0,1', or 'auto', got {devices!r}")


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
        if self.devices is not None:
            check_devices(self.devices)
        if self.precision is not None and str(self.precision) not in PRECISIONS:
            raise ConfigError(f"--trainer.precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if self.strategy is not None and not _strategy_ok(str(self.strategy)):
            raise ConfigError(f"--trainer.strategy must be one of {list(STRATEGIES)} (or a ddp variant with "
                              f"_find_unused_parameters_true/false), got {self.strategy!r}")
        if isinstance(self.num_nodes, bool) or not isinstance(self.num_nodes, int):
            raise ConfigError(f"--trainer.num_nodes must be an integer >= 1, got {self.num_nodes!r}")
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
            if name == "precision" and value == "auto" and not hasattr(config, "precision"):
                continue  # "auto" is resolved by routers with a precision of their own; others take Lightning's default
            if value is not None:
                out[name] = value
        return out


def single_process(trainer: TrainerConfig | None) -> TrainerConfig:
    """``trainer`` for fits that run in rank 0 alone (cross-validation folds after a DDP fit): one
    device, no multi-process strategy. The other ranks have left by then; a DDP fit would wait for them."""
    return replace(trainer or TrainerConfig(), devices=1, strategy="auto", num_nodes=1)


def ddp_worker() -> bool:
    """True in a DDP process other than global rank 0 (launched by Lightning or torchrun): such a
    process trains its share and leaves tracking, evaluation and the artifact to rank 0."""
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK"):
        if os.environ.get(var, "0") not in ("", "0"):
            return True
    return False

"""Small pieces every Lightning fit here shares: accelerator checks, quiet banners, and a fit call
that hands Ctrl-C back to the CLI."""

from __future__ import annotations

import logging
import warnings

import lightning as L
import torch

from routerzoo.errors import ConfigError


def check_accelerator(accelerator: str) -> None:
    """A clear error for an accelerator this machine does not have."""
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"router.accelerator {accelerator!r}: no CUDA device is visible to torch on this machine")
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("router.accelerator 'mps': no Apple MPS device is available on this machine")


def trainer_kwargs(config, ctx) -> dict:
    """Trainer keywords (accelerator, devices, strategy, precision, num_nodes): ``--trainer.*`` where
    set, else the router config's own fields; the accelerator checked to exist."""
    from routerzoo.training.trainer_config import TrainerConfig

    kwargs = (ctx.trainer or TrainerConfig()).resolve(config)
    check_accelerator(kwargs.get("accelerator", "auto"))
    return kwargs


def quiet_lightning() -> None:
    """Lightning's banners ("GPU available", tips) are noise for a router fit; warnings still show."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def run_fit(trainer: L.Trainer, module: L.LightningModule, train_dl, val_dl) -> None:
    """``trainer.fit``, with Lightning's SystemExit on Ctrl-C turned back into KeyboardInterrupt
    (the CLI then says "interrupted" and exits 130 like every other command)."""
    try:
        trainer.fit(module, train_dl, val_dl)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    if trainer.interrupted:
        raise KeyboardInterrupt

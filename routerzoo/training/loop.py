"""One Lightning fit loop for the reward-based routers (scalarised regression, reward distillation).

Same settings as the MLP router's fit (:mod:`routerzoo.training.mlp`): seeded and deterministic,
early stopping on a validation metric, the best epoch's weights kept in memory (no pickled
checkpoints), Ctrl-C given back to the CLI as KeyboardInterrupt.
"""

from __future__ import annotations

import logging
import warnings

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from routerzoo.errors import ConfigError
from routerzoo.training.context import FitContext
from routerzoo.training.mlp import KeepBest


def check_accelerator(accelerator: str) -> None:
    """A clear error for an accelerator this machine does not have."""
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"router.accelerator {accelerator!r}: no CUDA device is visible to torch on this machine")
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("router.accelerator 'mps': no Apple MPS device is available on this machine")


def fit_module(module: L.LightningModule, train_ds: Dataset, val_ds: Dataset | None, config, ctx: FitContext,
               monitor: str) -> dict:
    """Fit ``module`` (whose ``net`` attribute is the inference network) and load its best weights.

    Args:
        module: the LightningModule; logs ``monitor`` in its validation step.
        train_ds, val_ds: datasets of tensors (``val_ds`` None: no early stopping, last epoch kept).
        config: a router config with lr-independent loop fields: batch_size, max_epochs, patience,
            accelerator, devices, strategy.
        ctx: the fit context (seed, logger, progress).
        monitor: validation metric to minimise.

    Returns:
        fit metrics: best_epoch, epochs, and the best ``monitor`` value when validated.
    """
    from routerzoo.training.lightning_utils import trainer_kwargs

    tk = trainer_kwargs(config, ctx)  # --trainer.* over the config's accelerator/devices/strategy, checked
    keep = KeepBest(monitor)
    callbacks: list = [keep]
    if val_ds is not None:
        callbacks.append(L.pytorch.callbacks.EarlyStopping(monitor, patience=config.patience, mode="min"))
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    trainer = L.Trainer(
        max_epochs=config.max_epochs, **tk, logger=(ctx.logger() if callable(ctx.logger) else ctx.logger) or False,
        callbacks=callbacks, enable_checkpointing=False, enable_progress_bar=ctx.progress,
        enable_model_summary=False, log_every_n_steps=1, deterministic=True,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(ctx.seed)
    train_dl = DataLoader(train_ds, batch_size=config.batch_size, shuffle=True, generator=generator)
    val_dl = DataLoader(val_ds, batch_size=1024) if val_ds is not None else None
    try:
        trainer.fit(module, train_dl, val_dl)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    if trainer.interrupted:
        raise KeyboardInterrupt
    if keep.best_state is not None:
        module.net.load_state_dict(keep.best_state)
    module.net.cpu().eval()
    metrics = {"best_epoch": keep.best_epoch, "epochs": trainer.current_epoch}
    if val_ds is not None:
        metrics[monitor] = keep.best_score
    return metrics

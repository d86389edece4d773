"""One Lightning fit loop for the reward-based routers (scalarised regression, reward distillation).

Same settings as the MLP router's fit (:mod:`routerzoo.training.mlp`): seeded and deterministic,
early stopping on a validation metric, the best epoch's weights kept in memory (no pickled
checkpoints), Ctrl-C given back to the CLI as KeyboardInterrupt.
"""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader, Dataset

from routerzoo.training.context import FitContext
from routerzoo.training.lightning_utils import (
    early_stopped_trainer,
    run_fit,
    seeded_loader,
    trainer_kwargs,
)


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
    tk = trainer_kwargs(config, ctx)  # --trainer.* over the config's accelerator/devices/strategy, checked
    trainer, keep = early_stopped_trainer(config, ctx, tk, monitor, val_ds is not None)
    train_dl = seeded_loader(train_ds, config.batch_size, ctx.seed)
    val_dl = DataLoader(val_ds, batch_size=1024) if val_ds is not None else None
    run_fit(trainer, module, train_dl, val_dl)
    if keep.best_state is not None:
        module.net.load_state_dict(keep.best_state)
    module.net.cpu().eval()
    metrics = {"best_epoch": keep.best_epoch, "epochs": trainer.current_epoch}
    if val_ds is not None:
        metrics[monitor] = keep.best_score
    return metrics

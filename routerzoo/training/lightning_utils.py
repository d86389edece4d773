"""Small pieces every Lightning fit here shares: accelerator checks, quiet banners, and a fit call
that hands Ctrl-C back to the CLI."""

from __future__ import annotations

import copy
import logging
import warnings

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

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


class TwoLossModule(L.LightningModule):
    """A LightningModule around ``net`` minimising ``main + weight · aux``.

    Subclasses give ``_losses(batch) -> (main, aux)``, name both in ``loss_names`` (logged per
    epoch, synced across devices, as ``train_<name>`` and ``val_<name>``) and name the config field
    holding the weight in ``aux_weight``. The optimiser is AdamW at ``config.lr`` and
    ``config.weight_decay`` unless a subclass says otherwise.
    """

    loss_names: tuple[str, str]
    aux_weight: str

    def __init__(self, net: torch.nn.Module, config):
        super().__init__()
        self.net = net
        self.config = config

    def _losses(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    @staticmethod
    def _batch_size(batch) -> int:
        return len(batch[0])

    def _log_losses(self, split: str, main: torch.Tensor, aux: torch.Tensor, batch, **kwargs) -> None:
        names = {f"{split}_{self.loss_names[0]}": main, f"{split}_{self.loss_names[1]}": aux}
        self.log_dict(names, on_step=False, on_epoch=True, batch_size=self._batch_size(batch), sync_dist=True, **kwargs)

    def training_step(self, batch, batch_idx):
        main, aux = self._losses(batch)
        self._log_losses("train", main, aux, batch)
        return main + getattr(self.config, self.aux_weight) * aux

    def validation_step(self, batch, batch_idx):
        main, aux = self._losses(batch)
        self._log_losses("val", main, aux, batch, prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)


class KeepBest(L.Callback):
    """Keeps a copy of the weights of the best validation epoch in memory."""

    def __init__(self, monitor: str = "val_bce"):
        self.monitor = monitor
        self.best_score = float("inf")
        self.best_state: dict | None = None
        self.best_epoch = -1

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        score = trainer.callback_metrics.get(self.monitor)
        if score is not None and float(score) < self.best_score:
            self.best_score = float(score)
            self.best_epoch = trainer.current_epoch
            self.best_state = copy.deepcopy(pl_module.net.state_dict())


class EpochLines(L.Callback):
    """Progress of a fit as plain lines (``progress="lines"``: a log, not a terminal): epochs done and
    the monitored validation score, through :class:`routerzoo.progress.LineProgress` (rank 0 only)."""

    def __init__(self, name: str, monitor: str):
        self.name, self.monitor = name, monitor
        self._bar = None

    def on_fit_start(self, trainer, pl_module):
        from routerzoo.progress import LineProgress

        if trainer.is_global_zero:
            self._bar = LineProgress(trainer.max_epochs, self.name, "epoch")

    def on_train_epoch_end(self, trainer, pl_module):
        if self._bar is None:
            return
        score = trainer.callback_metrics.get(self.monitor)
        if score is not None:
            self._bar.set_description(f"{self.name} ({self.monitor} {float(score):.4f})")
        self._bar.update(1)

    def on_fit_end(self, trainer, pl_module):
        if self._bar is not None:
            self._bar.close()


def make_trainer(**kwargs) -> L.Trainer:
    """The one place a ``L.Trainer`` is built: deterministic, no checkpoints (no pickles; the best
    weights are kept in memory) and no model summary, unless ``kwargs`` say otherwise."""
    quiet_lightning()
    return L.Trainer(**{"enable_checkpointing": False, "enable_model_summary": False, "deterministic": True, **kwargs})


def early_stopped_trainer(config, ctx, tk: dict, monitor: str, has_val: bool, **kwargs) -> tuple[L.Trainer, KeepBest]:
    """A router fit's trainer: ``config.max_epochs`` epochs of ``tk`` (:func:`trainer_kwargs`), the
    fit context's logger and progress bar, the best ``monitor`` epoch kept, and early stopping after
    ``config.patience`` epochs without improvement when there is validation data.

    Returns:
        the trainer and its :class:`KeepBest` callback (``best_state`` to load after the fit).
    """
    from routerzoo.progress import mode

    keep = KeepBest(monitor)
    callbacks: list = [keep]
    shown = mode(ctx.progress)
    if shown == "lines":
        callbacks.append(EpochLines(type(config).__name__.removesuffix("Config").lower() or "fit", monitor))
    if has_val:
        callbacks.append(L.pytorch.callbacks.EarlyStopping(monitor, patience=config.patience, mode="min"))
    trainer = make_trainer(
        max_epochs=config.max_epochs, **tk, logger=(ctx.logger() if callable(ctx.logger) else ctx.logger) or False,
        callbacks=callbacks, enable_progress_bar=shown == "bar", log_every_n_steps=1, **kwargs,
    )  # fmt: skip
    return trainer, keep


def seeded_loader(ds: Dataset, batch_size: int, seed: int, **kwargs) -> DataLoader:
    """A shuffled training loader whose order depends on ``seed`` only."""
    return DataLoader(ds, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed), **kwargs)


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

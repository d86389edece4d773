"""Fit the kNN router; k is chosen on the validation split when not given.

Per-prompt outcomes are noisy (whether one model gets one question right is largely idiosyncratic),
so routing often prefers a larger k than the one minimising prediction error: on MMLU-Pro,
validation MSE is lowest at k = 80 while validation AIQ keeps rising to k = 320. k is therefore
selected by the routing objective itself (validation AIQ) unless ``select_by="mse"``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from routerzoo.errors import ConfigError
from routerzoo.routers.knn import KNNRouter
from routerzoo.training.context import FitContext


@dataclass
class KNNConfig:
    """kNN router hyper-parameters.

    Attributes:
        k: neighbours; None picks the best of ``k_candidates`` on the validation split.
        k_candidates: values tried when ``k`` is None (those above half the training set are dropped).
        select_by: "aiq" (validation AIQ of the cost-quality curve) or "mse" (validation mean
            squared error of predicted quality).
        temperature: softmax temperature over cosine similarities; 0 weighs neighbours equally.
    """

    k: int | None = None
    k_candidates: list[int] = field(default_factory=lambda: [10, 20, 40, 80, 160, 320])
    select_by: str = "aiq"
    temperature: float = 0.0

    def __post_init__(self):
        if self.k is not None and self.k < 1:
            raise ConfigError(f"--model.k must be >= 1, got {self.k}")
        if not self.k_candidates or min(self.k_candidates) < 1:
            raise ConfigError(f"--model.k_candidates must be positive integers, got {self.k_candidates}")
        if self.select_by not in ("aiq", "mse"):
            raise ConfigError(f"--model.select_by must be 'aiq' or 'mse', got {self.select_by!r}")
        if self.temperature < 0:
            raise ConfigError(f"--model.temperature must be >= 0, got {self.temperature}")


def validation_scores(router: KNNRouter, ctx: FitContext) -> dict:
    """Validation MSE of predicted quality (observed outcomes) and AIQ (prompts with every outcome)."""
    pred = router.predict_embeddings(ctx.val_embeddings)
    observed = ~np.isnan(ctx.val.quality)
    out = {"mse": float(np.mean((pred.quality[observed] - ctx.val.quality[observed]) ** 2))}
    complete = observed.all(axis=1)
    if complete.sum() >= 2:
        from routerzoo.evaluation.report import evaluate_predictions

        report = evaluate_predictions(pred.quality[complete], pred.cost[complete], ctx.val.quality[complete],
                                      ctx.val.cost[complete], ctx.val.models)
        out["aiq"] = report["aiq"]["router"]
    return out


def fit_knn(config: KNNConfig, ctx: FitContext) -> tuple[KNNRouter, dict]:
    """Returns the router and metrics to log (validation scores per candidate k)."""
    params = asdict(config)
    n = len(ctx.train)
    if config.k is not None:
        ks = [min(config.k, n)]
    else:
        ks = sorted({k for k in config.k_candidates if k <= max(1, n // 2)} or {min(config.k_candidates + [n])})
    metrics: dict = {}
    best, best_key = None, float("inf")
    for k in ks:
        router = KNNRouter(**ctx.router_kwargs(dict(params, k=k), encoder=True))
        router.fit_arrays(ctx.train_embeddings, ctx.train.quality, ctx.train.cost)
        if len(ctx.val) == 0 or len(ks) == 1:
            best = (k, router)
            break
        scores = validation_scores(router, ctx)
        metrics.update({f"val_{name}_k{k}": value for name, value in scores.items()})
        # higher AIQ is better, lower MSE is better; fall back to MSE when AIQ is not computable
        key = -scores["aiq"] if config.select_by == "aiq" and "aiq" in scores else scores["mse"]
        if key < best_key:
            best, best_key = (k, router), key
    k, router = best
    metrics["k"] = k
    return router, metrics

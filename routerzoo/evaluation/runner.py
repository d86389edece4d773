"""Evaluate a router on a dataset: cost-quality curves on benchmark outcomes, pairwise accuracy and
log-loss on preference pairs, or both when the dataset has both."""

from __future__ import annotations

from routerzoo.data.dataset import RoutingDataset
from routerzoo.data.matrix import OutcomeMatrix
from routerzoo.errors import UserError
from routerzoo.routers.core.base import Router


def evaluation_matrix(router: Router, dataset: RoutingDataset, split: str = "test") -> tuple[OutcomeMatrix, int]:
    """The split's outcomes for the router's candidate models, restricted to prompts where every
    candidate has an outcome (so every decision can be scored). Returns (matrix, prompts dropped)."""
    full = dataset.outcome_matrix(split=split, models=router.models)
    matrix = full.complete()
    if len(matrix) == 0:
        raise UserError(f"dataset {dataset.name} has no prompts in split {split!r} with outcomes for all of {router.models}")
    return matrix, len(full) - len(matrix)


def has_split(dataset: RoutingDataset, split: str, models: list[str]) -> bool:
    """Whether ``split`` holds anything the router can be evaluated on."""
    if dataset.outcomes is not None:
        if len(dataset.outcome_matrix(split=split, models=models).complete()):
            return True
    if dataset.preferences is not None:
        return len(dataset.preference_matrix(split=split, models=models)) > 0
    return False


def use_embedding_cache(router) -> None:
    """Let a loaded router encode through the on-disk embedding cache that training fills.

    A router loaded from an artifact keeps embeddings in memory only (a server must never fill a
    disk), so evaluating or calibrating it would re-encode every prompt of the split: minutes on a
    CPU for a few thousand prompts that training already encoded. Offline tools (eval, calibrate,
    benchmarks) call this first; it does nothing for routers without an encoder or with one loaded.
    """
    encoder_id = getattr(router, "encoder", None)
    if isinstance(router, Router) and isinstance(encoder_id, str) and encoder_id and router.loaded_encoder is None:
        from routerzoo.routers.encoders.encoder import Encoder

        router.set_encoder(Encoder(encoder_id, cache_dir=None, show_progress=False))


def _check_models(router: Router, dataset: RoutingDataset) -> None:
    missing = [m for m in router.models if m not in dataset.models]
    if missing:
        raise UserError(f"dataset {dataset.name} has no data for candidate model(s) {missing} of this router; "
                        f"it has {dataset.models}")


def evaluate_router(
    router: Router,
    dataset: RoutingDataset,
    split: str = "test",
    *,
    strong: str | None = None,
    weak: str | None = None,
    bootstrap: int = 0,
    prices: dict | None = None,
) -> dict:
    """Full report: the cost-quality metrics (:func:`~routerzoo.evaluation.report.evaluate_predictions`)
    where the dataset has outcomes, and ``pairs`` (:func:`~routerzoo.evaluation.pairwise.evaluate_pairs`)
    where it has preference pairs.

    ``prices`` (model → Price or ``{"input", "output"}``) reprices the outcomes too, from their token
    counts (:func:`~routerzoo.data.prices.reprice_outcomes`), so the single models, the zero router
    and the oracle are scored at the prices the router decides at (give the router the same prices
    with :meth:`Router.with_prices`)."""
    from routerzoo.evaluation.pairwise import evaluate_pairs
    from routerzoo.evaluation.report import evaluate_predictions

    for name, flag in ((strong, "--strong"), (weak, "--weak")):
        if name is not None and name not in router.models:
            raise UserError(f"{flag} {name!r} is not a candidate model of this router; candidates: {router.models}")
    if (strong is None) != (weak is None):
        raise UserError("--strong and --weak go together")
    _check_models(router, dataset)
    report: dict = {}
    dropped = 0
    if dataset.outcomes is not None:
        matrix, dropped = evaluation_matrix(router, dataset, split)
        if prices:
            from routerzoo.data.prices import reprice_outcomes

            matrix = reprice_outcomes(matrix, prices)
        use_embedding_cache(router)
        pred = router.predict(matrix.prompts)
        report = evaluate_predictions(pred.quality, pred.cost, matrix.quality, matrix.cost, matrix.models,
                                      strong=strong, weak=weak, bootstrap=bootstrap)
    if dataset.preferences is not None:
        pairs = dataset.preference_matrix(split=split, models=router.models)
        if len(pairs) == 0 and dataset.outcomes is None:
            raise UserError(f"dataset {dataset.name} has no preference pairs in split {split!r} between {router.models}")
        report["pairs"] = evaluate_pairs(router, pairs)
        report.setdefault("n_prompts", len(set(pairs.prompt_ids)))
        report.setdefault("models", list(router.models))
    report["router"] = {"kind": router.kind, "config": router.describe()["config"], "lineage": router.lineage}
    report["dataset"] = {
        "name": dataset.name,
        "sha256": dataset.manifest.get("sha256"),
        "split": split,
        "prompts_dropped_incomplete": dropped,
    }
    return report

"""Evaluate a router on a dataset: predictions for the split's prompts → metrics report."""

from __future__ import annotations

from routerzoo.data.dataset import OutcomeMatrix, RoutingDataset
from routerzoo.errors import UserError
from routerzoo.routers.base import Router


def evaluation_matrix(
    router: Router, dataset: RoutingDataset, split: str = "test"
) -> tuple[OutcomeMatrix, int]:
    """The split's outcomes for the router's candidate models, restricted to prompts where every
    candidate has an outcome (so every decision can be scored). Returns (matrix, prompts dropped)."""
    full = dataset.outcome_matrix(split=split, models=router.models)
    matrix = full.complete()
    if len(matrix) == 0:
        raise UserError(
            f"dataset {dataset.name} has no prompts in split {split!r} with outcomes for all of {router.models}"
        )
    return matrix, len(full) - len(matrix)


def evaluate_router(
    router: Router,
    dataset: RoutingDataset,
    split: str = "test",
    *,
    strong: str | None = None,
    weak: str | None = None,
    bootstrap: int = 0,
) -> dict:
    """Full metrics report (see :func:`routerzoo.evaluation.report.evaluate_predictions`)."""
    from routerzoo.evaluation.report import evaluate_predictions

    for name, flag in ((strong, "--strong"), (weak, "--weak")):
        if name is not None and name not in router.models:
            raise UserError(
                f"{flag} {name!r} is not a candidate model of this router; candidates: {router.models}"
            )
    if (strong is None) != (weak is None):
        raise UserError("--strong and --weak go together")
    matrix, dropped = evaluation_matrix(router, dataset, split)
    pred = router.predict(matrix.prompts)
    report = evaluate_predictions(
        pred.quality,
        pred.cost,
        matrix.quality,
        matrix.cost,
        matrix.models,
        strong=strong,
        weak=weak,
        bootstrap=bootstrap,
    )
    report["router"] = {"kind": router.kind, "params": router.params, "lineage": router.lineage}
    report["dataset"] = {
        "name": dataset.name,
        "sha256": dataset.manifest.get("sha256"),
        "split": split,
        "prompts_dropped_incomplete": dropped,
    }
    return report

"""Evaluation of routers: metrics (AIQ, APGR, CPT, cascade AUC), cost-weight sweeps, reports, plots.

Pure numpy; matplotlib is imported only by :func:`plot_report` / :func:`plot_reports`.
Every convention is stated in ``docs/metrics.md``.
"""

from routerzoo.evaluation.metrics import (
    EvaluationInputError,
    aiq,
    apgr,
    apgr_routellm,
    cascade_auc,
    cascade_max_diff,
    cpt,
    hull_value,
    nondecreasing_convex_hull,
    oracle_frontier,
    pgr,
    pgr_curve,
    routellm_curve,
)
from routerzoo.evaluation.report import evaluate_predictions, format_table
from routerzoo.evaluation.sweep import cost_weight_grid, decide, oracle_points, sweep


def plot_report(report: dict, path, title: str | None = None):
    """Plot one report to a PNG; see :func:`routerzoo.evaluation.plot.plot_report`."""
    from routerzoo.evaluation.plot import plot_report as _plot

    return _plot(report, path, title=title)


def plot_reports(reports: dict, path, title: str | None = None):
    """Plot several routers' reports on one PNG; see :func:`routerzoo.evaluation.plot.plot_reports`."""
    from routerzoo.evaluation.plot import plot_reports as _plot

    return _plot(reports, path, title=title)


__all__ = [
    "EvaluationInputError",
    "aiq",
    "apgr",
    "apgr_routellm",
    "cascade_auc",
    "cascade_max_diff",
    "cost_weight_grid",
    "cpt",
    "decide",
    "evaluate_predictions",
    "format_table",
    "hull_value",
    "nondecreasing_convex_hull",
    "oracle_frontier",
    "oracle_points",
    "pgr",
    "pgr_curve",
    "plot_report",
    "plot_reports",
    "routellm_curve",
    "sweep",
]

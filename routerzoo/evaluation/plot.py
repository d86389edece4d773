"""Cost-quality plots of evaluation reports (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np

from routerzoo.evaluation.metrics import EvaluationInputError, _hull

__all__ = ["plot_report", "plot_reports"]

# matplotlib's text layout (mathtext's pyparsing grammar, the font cache) is not thread-safe: two
# trainings in one process (threads logging to one tracking server) failed with ParseException when
# they drew at the same moment. Drawing is a few hundred ms, so rendering is serialised.
_RENDER_LOCK = threading.Lock()


def _serialised(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _RENDER_LOCK:
            return fn(*args, **kwargs)

    return wrapper


def _xy(points: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([p["cost"] for p in points], float), np.array([p["quality"] for p in points], float)


def _hull_line(c: np.ndarray, q: np.ndarray, right: float) -> tuple[np.ndarray, np.ndarray]:
    """R~ from the hull's first vertex to ``right`` (flat beyond the last vertex), sampled densely so
    that the linear-in-cost interpolation is drawn faithfully on a log axis too."""
    hc, hq = _hull(c, q)
    right = max(right, float(hc[-1]))
    xs = hc
    start = float(hc[hc > 0][0]) if (hc > 0).any() else 0.0
    if right > start > 0:
        xs = np.unique(np.concatenate((hc, np.geomspace(start, right, 400))))
    elif right > hc[-1]:
        xs = np.append(hc, right)
    return xs, np.interp(xs, hc, hq)


def plot_report(report: dict, path, title: str | None = None) -> Path:
    """Plot one report (see :func:`plot_reports`); the router is named by ``report["name"]`` if set."""
    return plot_reports({str(report.get("name", "router")): report}, path, title=title)


@_serialised
def plot_reports(reports: dict[str, dict], path, title: str | None = None) -> Path:
    """Write a PNG of mean cost per prompt (x) against mean quality (y).

    Drawn: each router's swept points (markers) and its non-decreasing convex hull (solid line,
    flat to the right up to the most expensive single model); the single models (labelled
    points); the zero router, i.e. the single models' hull (dashed); the oracle's points and hull
    (dotted). Legend entries carry the AIQ. The x axis is logarithmic when the costs span more than
    10x (symmetric-log if some cost is 0), linear otherwise. Single models and the oracle are taken
    from the first report; all reports should come from the same outcome table.

    Args:
        reports: router name -> report from :func:`~routerzoo.evaluation.report.evaluate_predictions`.
        path: output PNG path (parent folders are created).
        title: plot title; default "Quality vs cost (n prompts)".

    Returns:
        The path written.
    """
    if not reports:
        raise EvaluationInputError("plot_reports: no reports to plot")
    # a bare Figure renders with the Agg canvas and leaves the user's pyplot backend alone
    from routerzoo.extras import require

    matplotlib = require("matplotlib", "cost-quality plots")
    from matplotlib.figure import Figure

    first = next(iter(reports.values()))
    singles = first["single_models"]
    sc = np.array([s["cost"] for s in singles], float)
    sq = np.array([s["quality"] for s in singles], float)
    right = float(sc.max())
    oc, oq = _xy(first["oracle"]["curve"])

    all_c = [sc, oc] + [_xy(r["curve"])[0] for r in reports.values()]
    xs = np.concatenate(all_c)
    right = max(right, float(xs.max()))
    pos = xs[xs > 0]

    fig = Figure(figsize=(9, 6), dpi=150)
    ax = fig.add_subplot()
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (name, rep) in enumerate(reports.items()):
        color = colors[k % len(colors)]
        c, q = _xy(rep["curve"])
        hc, hq = _hull_line(c, q, right)
        aiq = rep.get("aiq", {}).get("router")
        gap = rep.get("gap_closed")
        extra = f"AIQ {aiq:.4f}" if aiq is not None else ""
        if gap is not None:
            extra += f", gap closed {100 * gap:.1f}%"
        ax.plot(hc, hq, "-", color=color, lw=2, label=f"{name} hull ({extra})", zorder=3)
        ax.plot(c, q, "o", color=color, ms=3.5, alpha=0.6, label=f"{name} cost-weight sweep", zorder=3)

    zc, zq = _hull_line(sc, sq, right)
    z_aiq = first.get("aiq", {}).get("zero_router")
    ax.plot(zc, zq, "--", color="0.35", lw=1.5, zorder=2,
            label="zero router: single-model hull" + (f" (AIQ {z_aiq:.4f})" if z_aiq is not None else ""))  # fmt: skip
    ohc, ohq = _hull_line(oc, oq, right)
    o_aiq = first.get("aiq", {}).get("oracle")
    ax.plot(ohc, ohq, ":", color="black", lw=1.5, zorder=2,
            label="oracle hull" + (f" (AIQ {o_aiq:.4f})" if o_aiq is not None else ""))  # fmt: skip
    ax.plot(oc, oq, "x", color="black", ms=3, alpha=0.5, zorder=2, label="oracle cost-weight sweep")
    ax.scatter(sc, sq, s=36, facecolor="white", edgecolor="black", zorder=4, label="single models")
    for s in singles:
        ax.annotate(str(s["name"]), (s["cost"], s["quality"]), textcoords="offset points", xytext=(5, -9),
                    fontsize=7, color="0.2", zorder=5)  # fmt: skip

    if pos.size and pos.max() > 10 * pos.min():
        if pos.size < xs.size:
            ax.set_xscale("symlog", linthresh=float(pos.min()))
        else:
            ax.set_xscale("log")
    ax.set_xlabel("mean cost per prompt (USD)")
    ax.set_ylabel("mean quality")
    n = first.get("n_prompts")
    ax.set_title(title if title is not None else f"Quality vs cost ({n} prompts)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out

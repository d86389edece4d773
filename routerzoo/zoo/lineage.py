"""Lineage: what a router was trained on, recorded in its artifact and on its registry version.

:func:`training_lineage` is merged into the artifact's ``lineage`` at training time, so a router
carries it wherever it is copied; :func:`lineage_tags` flattens it into ``routerzoo.lineage.*``
tags for the MLflow run and the registered version, where the UI and ``routerzoo zoo show`` read
it. The full record also goes to the run as ``lineage.json`` (tags are capped in length).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

TAG_PREFIX = "routerzoo.lineage."
METRIC_TAG_PREFIX = "routerzoo.metric."
#: MLflow caps tag values at 8,000 characters; long lists are cut and say so
_MAX_TAG = 4000


def git_commit() -> str | None:
    """The routerzoo source's git commit (``+dirty`` when it has uncommitted changes), or None."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None  # an installed wheel: its version is the record
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "diff", "--quiet", "HEAD", "--", "routerzoo"],
                               capture_output=True, timeout=10).returncode != 0
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def training_lineage(dataset, encoder: str | None, seed: int) -> dict:
    """Lineage of a router trained on ``dataset`` with ``encoder`` (None for routers without one).

    Returns:
        dataset name, sha256 and source files (path + sha256); split spec and seed; candidate models
        and their prices with the date they were recorded; encoder id and weights fingerprint;
        routerzoo version and git commit.
    """
    from routerzoo import __version__
    from routerzoo.routers.encoders.fingerprint import encoder_weights_sha256

    m = dataset.manifest
    return {
        "dataset": dataset.name,
        "dataset_sha256": m.get("sha256"),
        "dataset_sources": [{"path": s.get("path"), "sha256": s.get("sha256")} for s in m.get("sources", [])],
        "split": m.get("split"),
        "seed": seed,
        "candidates": list(dataset.models),
        "prices": m.get("prices", {}),
        # the prices were attached when the dataset was imported; an entry's own as_of is in its source
        "prices_as_of": m.get("created"),
        "encoder": encoder,
        "encoder_sha256": encoder_weights_sha256(encoder) if encoder else None,
        "routerzoo_version": __version__,
        "git_commit": git_commit(),
    }


def _text(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _MAX_TAG else text[:_MAX_TAG - 20] + "… (see lineage.json)"


def lineage_tags(lineage: dict) -> dict[str, str]:
    """``routerzoo.lineage.<key>`` tags of a lineage record (None values left out)."""
    tags = {}
    for key, value in lineage.items():
        if value is None:
            continue
        if key == "dataset_sources":
            tags[f"{TAG_PREFIX}dataset_sources"] = _text([s.get("path") for s in value])
            continue
        tags[f"{TAG_PREFIX}{key}"] = _text(value)
    return tags


def metric_tags(metrics: dict) -> dict[str, str]:
    """``routerzoo.metric.<name>`` tags: a version's evaluation numbers beside its lineage."""
    return {f"{METRIC_TAG_PREFIX}{k}": f"{v:.6g}" for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}

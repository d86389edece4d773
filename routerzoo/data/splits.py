"""Deterministic train/val/test splits.

A prompt's split depends only on its prompt id, the seed and the fractions, so it is the same on
every machine and every run. Prompts whose normalised text is equal, and prompts an importer put in
the same ``group`` (two turns of one conversation, revised versions of one question), form one
group keyed by the smallest prompt id in it, and always land in the same split, so a duplicated
question cannot leak from train into test. With ``stratify=True`` groups are ranked within each category and cut at the
requested fractions, so every category is split in the same proportions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from routerzoo.data.text import normalise_text  # noqa: F401  (re-exported: splits group by it)
from routerzoo.errors import ConfigError


def _unit_hash(key: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class SplitSpec:
    """How a dataset is split.

    Attributes:
        val: fraction of prompt groups for validation (early stopping, tuning).
        test: fraction of prompt groups held out for evaluation.
        seed: changes the assignment while keeping it deterministic.
        stratify: cut each category at the fractions instead of the whole dataset.
    """

    val: float = 0.1
    test: float = 0.2
    seed: int = 0
    stratify: bool = False

    def __post_init__(self):
        if not (0 <= self.val < 1 and 0 <= self.test < 1 and self.val + self.test < 1):
            raise ConfigError(f"split fractions need 0 <= val, test and val + test < 1; got val={self.val}, test={self.test}")

    def to_dict(self) -> dict:
        return {"val": self.val, "test": self.test, "seed": self.seed, "stratify": self.stratify}


def assign_splits(prompts: pd.DataFrame, spec: SplitSpec) -> pd.Series:
    """Split label per prompt.

    Args:
        prompts: one row per prompt with columns ``prompt_id``, ``prompt`` and optionally
            ``category`` and ``group``.
        spec: fractions, seed, stratification.

    Returns:
        Series of "train" / "val" / "test" indexed by ``prompt_id``.
    """
    frame = prompts[["prompt_id", "prompt"]].copy()
    frame["category"] = prompts["category"] if "category" in prompts.columns else None
    frame["norm"] = frame["prompt"].map(normalise_text)
    explicit = prompts["group"] if "group" in prompts.columns else pd.Series([None] * len(prompts), index=prompts.index)
    # a prompt without an explicit group is a group of its own
    frame["explicit"] = explicit.where(explicit.notna(), "\0" + frame["prompt_id"]).astype(str).to_numpy()
    frame["group"] = frame["prompt_id"]
    # connected components of "same text" ∪ "same explicit group": propagate the smallest id until stable
    while True:
        merged = frame.groupby("norm")["group"].transform("min")
        merged = merged.groupby(frame["explicit"]).transform("min")
        if merged.equals(frame["group"]):
            break
        frame["group"] = merged
    groups = frame.drop_duplicates("group").set_index("group")
    u = groups.index.to_series().map(lambda g: _unit_hash(g, spec.seed))
    if spec.stratify:
        cat = groups["category"].fillna("").astype(str)
        # rank within category, then cut at the fractions: exact proportions per category
        rank = u.groupby(cat).rank(method="first") - 1
        size = cat.map(cat.value_counts())
        pos = (rank + 0.5) / size
    else:
        pos = u
    label = np.where(pos < spec.test, "test", np.where(pos < spec.test + spec.val, "val", "train"))
    group_split = pd.Series(label, index=groups.index)
    return pd.Series(frame["group"].map(group_split).to_numpy(), index=frame["prompt_id"].to_numpy(), name="split")

"""Prompt features beyond the sentence embedding, known at routing time.

* prompt length: log(1 + tokens) of the prompt (OpenAI's ``cl100k_base`` counts from ``bpe-openai``,
  the tokenizer the importers count costs with), centred and scaled by fixed constants so no
  statistics need storing: long prompts are often harder, and cost more;
* category (when the dataset has one): a one-hot over the training categories plus an "unknown"
  slot. Training hides a share of the categories (``category_dropout``) so "unknown" is learned,
  and routing never needs one: ``predict(prompts)`` routes every prompt as "unknown"; callers that
  know the category pass it to the router's ``predict_with_categories``.

The learned vocabulary is part of the router's typed config, so the artifact's ``config.json``
says exactly which features the network reads. Inference imports no pandas.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from routerzoo.errors import ConfigError, UserError

#: log(1 + tokens) is shifted and scaled by these constants: about zero mean, unit spread on benchmarks
LENGTH_SHIFT, LENGTH_SCALE = 5.0, 1.5
UNKNOWN = "<unknown>"


@dataclass
class PromptFeatures:
    """Features appended to the prompt embedding.

    Attributes:
        prompt_length: append the prompt's log token count (cl100k_base).
        category: append a one-hot of the prompt's category (plus "unknown"); ignored when the
            training data has no categories.
        category_dropout: share of training prompts whose category is hidden, so the network
            learns to route without one (as it must when a request carries none).
        categories: the category vocabulary, filled in by training (stored in the artifact).
    """

    prompt_length: bool = False
    category: bool = False
    category_dropout: float = 0.3
    categories: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not 0 <= self.category_dropout <= 1:
            raise ConfigError(f"router.features.category_dropout must be in [0, 1], got {self.category_dropout}")

    @property
    def width(self) -> int:
        """Number of feature columns appended to the embedding."""
        return int(self.prompt_length) + (len(self.categories) + 1 if self.category and self.categories else 0)


_encoding = None


def token_counts(prompts: Sequence[str]) -> np.ndarray:
    """(n,) cl100k_base token counts of ``prompts``."""
    global _encoding
    if _encoding is None:
        import bpe_openai

        _encoding = bpe_openai.get_encoding("cl100k_base")
    return np.array([len(_encoding.encode_ordinary(p)) for p in prompts], dtype=np.float64)


def feature_matrix(spec: PromptFeatures, prompts: Sequence[str], categories: Sequence | None = None) -> np.ndarray:
    """(n, spec.width) float32 features of ``prompts``.

    Args:
        spec: which features, and the category vocabulary.
        prompts: n prompt texts.
        categories: n categories (None entries, or None for all: unknown). A category outside the
            vocabulary is an error naming it, since silently routing it as unknown hides a typo.
    """
    n = len(prompts)
    cols = []
    if spec.prompt_length:
        cols.append(((np.log1p(token_counts(prompts)) - LENGTH_SHIFT) / LENGTH_SCALE)[:, None])
    if spec.category and spec.categories:
        onehot = np.zeros((n, len(spec.categories) + 1))
        index = {c: i for i, c in enumerate(spec.categories)}
        cats = [None] * n if categories is None else list(categories)
        if len(cats) != n:
            raise UserError(f"{len(cats)} categories for {n} prompts")
        for i, c in enumerate(cats):
            if c is None or c == UNKNOWN:
                onehot[i, -1] = 1.0
            elif c in index:
                onehot[i, index[c]] = 1.0
            else:
                raise UserError(f"category {c!r} (prompt {i}) is not one the router was trained on: {spec.categories}")
        cols.append(onehot)
    if not cols:
        return np.zeros((n, 0), dtype=np.float32)
    return np.hstack(cols).astype(np.float32)

"""The small interface through which sequential policies call models.

A policy never talks HTTP or reads a dataset itself: it asks a :class:`ModelClient` for completions.
:class:`OfflineClient` answers from a benchmark table (evaluation, calibration, training of MDP
policies); the server's client makes real OpenAI-compatible HTTP calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class Completion:
    """One model answer.

    Attributes:
        text: the response text, if known.
        token_logprobs: (t,) log-probabilities of the response tokens, if known.
        cost: USD cost of the call.
        quality: the answer's true quality (offline only: looked up in the benchmark table).
    """

    text: str | None
    token_logprobs: np.ndarray | None
    cost: float
    quality: float | None = None


class ModelClient(Protocol):
    """Anything that can answer prompts with a named model."""

    def complete(self, model: str, prompts: Sequence[str]) -> list[Completion | None]:
        """One completion per prompt (None where the model cannot answer it)."""
        ...


class OfflineClient:
    """Answers from a benchmark table: the response, logprobs, cost and quality recorded there.

    Args:
        matrix: an :class:`~routerzoo.data.matrix.OutcomeMatrix` holding the prompts to answer.

    Prompts are looked up by their exact text. ``calls`` counts the calls made per model.
    """

    def __init__(self, matrix):
        self.matrix = matrix
        self.calls: dict[str, int] = {}
        self._rows: dict[str, int] | None = None
        self._cols = {m: j for j, m in enumerate(matrix.models)}

    def _row(self, prompt: str) -> int | None:
        if self._rows is None:
            self._rows = {}
            for i, p in enumerate(self.matrix.prompts):
                self._rows.setdefault(p, i)
        return self._rows.get(prompt)

    def complete(self, model: str, prompts: Sequence[str]) -> list[Completion | None]:
        j = self._cols.get(model)
        if j is None:
            raise KeyError(f"the benchmark table has no model {model!r}; it has {self.matrix.models}")
        self.calls[model] = self.calls.get(model, 0) + len(prompts)
        out: list[Completion | None] = []
        mx = self.matrix
        for prompt in prompts:
            i = self._row(prompt)
            if i is None or np.isnan(mx.quality[i, j]):
                out.append(None)
                continue
            text = None if mx.responses is None else mx.responses[i, j]
            lp = None if mx.token_logprobs is None or mx.token_logprobs[i, j] is None else np.asarray(mx.token_logprobs[i, j], dtype=np.float64)
            out.append(Completion(text, lp, float(mx.cost[i, j]), float(mx.quality[i, j])))
        return out

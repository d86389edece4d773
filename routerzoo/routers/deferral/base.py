"""Deferral scorers: is this answer good enough to return, or should the cascade escalate?

A deferral scorer reads a batch of (prompt, response, optional token logprobs) triples and gives the
probability that each response is acceptable. Cascade and MDP policies threshold it; unsupervised
scorers (token-logprob confidence) need no training, learned ones are fitted like routers and saved
as artifacts of the same form (``config.json`` + ``weights.safetensors``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, ClassVar

import numpy as np

from routerzoo.errors import UserError


class DeferralScorer:
    """Base class of deferral scorers.

    Args:
        config: the scorer's typed config (an instance of ``Config``).
    """

    kind: ClassVar[str] = ""
    Config: ClassVar[type]
    #: whether :meth:`predict` needs token logprobs (the server then asks backends for them)
    needs_logprobs: ClassVar[bool] = False

    def __init__(self, config=None):
        self.config = config if config is not None else self.Config()

    def predict(
        self,
        prompts: Sequence[str],
        responses: Sequence[str | None],
        token_logprobs: Sequence[np.ndarray | None] | None = None,
    ) -> np.ndarray:
        """Probability that each response is acceptable.

        Args:
            prompts: n prompts.
            responses: n responses (None where unknown).
            token_logprobs: n arrays of per-token log-probabilities (None where unknown), or None.

        Returns:
            (n,) floats in [0, 1].
        """
        raise NotImplementedError

    def _check_batch(self, fitted: bool, prompts, responses) -> int:
        """Refuse an unfitted scorer, or as many responses as prompts not; the batch size."""
        if not fitted:
            raise UserError(f"{self.kind} scorer is not fitted (train it with `routerzoo train --router {self.kind}`)")
        if len(responses) != len(prompts):
            raise UserError(f"{len(prompts)} prompts but {len(responses)} responses")
        return len(prompts)

    def state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save (none for unsupervised scorers)."""
        return {}

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": asdict(self.config)}

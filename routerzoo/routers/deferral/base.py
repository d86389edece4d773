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

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.core.logistic import check_params


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


def check_l2(l2: float) -> None:
    """The ridge penalty of a learned scorer's logistic regression is a number >= 0 (NaN refused)."""
    if not l2 >= 0:
        raise ConfigError(f"l2 must be >= 0, got {l2}")


class LogisticScorer(DeferralScorer):
    """A scorer whose learned state is one or more logistic regressions
    (:func:`routerzoo.routers.core.logistic.fit_logistic` parameters).

    ``heads`` maps the attribute holding each regression's parameters (None until fitted) to the
    prefix of its tensors in the artifact; :meth:`n_inputs` says how many features each one reads,
    which :meth:`load_state` checks the saved shapes against.
    """

    heads: ClassVar[dict[str, str]] = {"params": "lr."}

    def __init__(self, config=None):
        super().__init__(config)
        for attr in self.heads:
            setattr(self, attr, None)

    @property
    def fitted(self) -> bool:
        return all(getattr(self, attr) is not None for attr in self.heads)

    def n_inputs(self, attr: str, tensors: dict[str, np.ndarray]) -> int:
        """Features the ``attr`` regression reads; by default the width of its saved weights."""
        name = f"{self.heads[attr]}weight"
        if name not in tensors:
            raise KeyError(f"weights lack tensor {name!r}")
        return int(np.asarray(tensors[name]).shape[0])

    def state(self) -> dict[str, np.ndarray]:
        if not self.fitted:
            return {}
        return {f"{prefix}{k}": v for attr, prefix in self.heads.items() for k, v in getattr(self, attr).items()}

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        for attr, prefix in self.heads.items():
            setattr(self, attr, check_params(tensors, prefix, self.n_inputs(attr, tensors)))

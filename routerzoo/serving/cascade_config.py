"""Typed configuration of the server's cascade mode (``mode: cascade`` in ``serve.yaml``).

Kept apart from :mod:`routerzoo.serving.config` so that module stays about routing and this one
about cascades; it imports nothing from the server, so the config module can import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from routerzoo.errors import ConfigError

SERVE_MODES = ("route", "cascade")


@dataclass
class CascadeServeConfig:
    """A cascade served under the served name (``model: <name>`` in requests).

    Stage k calls ``chain[k]`` (with token logprobs requested when the scorer reads them), scores
    the answer with the deferral scorer and returns it when ``score >= thresholds[k]``; otherwise
    it escalates to stage k + 1. The last stage's answer is always returned.

    Attributes:
        chain: candidate models in calling order (cheapest first), each with a backend.
        thresholds: acceptance threshold per stage except the last, or one number for every stage
            (scores are probabilities in [0, 1]: 0 accepts every first answer, above 1 always
            escalates). ``routerzoo calibrate-cascade`` writes calibrated ones.
        scorer: a registered deferral kind (``routerzoo routers --role deferral``) used with
            ``scorer_config``, or the directory of a trained deferral scorer artifact.
        scorer_config: the kind's config fields (only with a kind; an artifact holds its own).
        top_logprobs: alternatives per token asked of chat backends (0: only the chosen token's
            logprob; scorers reading max-softmax / entropy / margin need >= 2).
        policy: a sequential policy artifact (a calibrated cascade from ``routerzoo calibrate-cascade
            --out DIR``, an MDP router from ``routerzoo train --router mdp``), as a directory or
            ``models:/NAME@ALIAS`` (hot-reloaded when the alias moves), run instead of a chain: its
            models, thresholds and scorer are its own; leave ``chain`` empty.
    """

    chain: list[str] = field(default_factory=list)
    thresholds: float | list[float] = 0.5
    scorer: str = "logprob-confidence"
    scorer_config: dict[str, Any] = field(default_factory=dict)
    top_logprobs: int = 0
    policy: str = ""

    def __post_init__(self):
        if self.policy:
            if self.chain:
                raise ConfigError("give cascade.policy (a trained MDP router) or cascade.chain, not both")
            return
        # the cascade policy's own config owns the chain / thresholds rules (one set of checks)
        from routerzoo.routers.policies.cascade import CascadeConfig

        expanded = CascadeConfig(chain=list(self.chain), thresholds=self.thresholds)
        self.chain, self.thresholds = expanded.chain, expanded.thresholds
        if not self.scorer:
            raise ConfigError("scorer must name a deferral kind or a scorer artifact directory")
        if not 0 <= self.top_logprobs <= 20 or isinstance(self.top_logprobs, bool):
            raise ConfigError(f"top_logprobs must be in 0..20 (OpenAI's limit), got {self.top_logprobs}")
        for k, t in enumerate(self.thresholds):
            if not math.isfinite(t):
                raise ConfigError(f"thresholds[{k}] must be finite, got {t}")

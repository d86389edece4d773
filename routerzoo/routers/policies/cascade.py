"""Cascade: call models in a fixed order, return the first answer the deferral scorer accepts.

Stage k calls ``chain[k]``; its answer is scored by a :class:`~routerzoo.routers.deferral.base.DeferralScorer`
(the probability that the answer is acceptable) and returned when the score is at least
``thresholds[k]``, else the prompt escalates to stage k + 1. The last stage's answer is always
returned. Cheap-first chains spend the expensive models only on the prompts the cheap ones are
unsure of (FrugalGPT; Varshney & Baral 2022).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.deferral.base import DeferralScorer
from routerzoo.routers.policies.base import Call, SequentialPolicy, Steps, Trace

__all__ = ["CascadeConfig", "CascadePolicy"]


@dataclass
class CascadeConfig:
    """A cascade over an ordered chain of models.

    Attributes:
        chain: the models in calling order, normally cheapest first; at least one, no repeats.
        thresholds: acceptance threshold on the deferral score, one per stage except the last
            (whose answer is always returned), or a single number used for every stage. A stage's
            answer is accepted when ``score >= threshold``: 0 accepts every answer (scores are in
            [0, 1]), anything above 1 escalates every answer. Stored as the expanded list.
    """

    chain: list[str] = field(default_factory=list)
    thresholds: float | list[float] = 0.5

    def __post_init__(self):
        if not isinstance(self.chain, (list, tuple)) or not self.chain:
            raise ConfigError("a cascade needs a non-empty chain of models")
        self.chain = [str(m) for m in self.chain]
        if any(not m for m in self.chain):
            raise ConfigError(f"chain: model names must be non-empty, got {self.chain}")
        dup = sorted({m for m in self.chain if self.chain.count(m) > 1})
        if dup:
            raise ConfigError(f"chain: model(s) {dup} appear more than once in {self.chain}")
        stages = len(self.chain) - 1
        t = self.thresholds
        if isinstance(t, (int, float)) and not isinstance(t, bool):
            t = [float(t)] * stages
        elif isinstance(t, (list, tuple)):
            if len(t) != stages:
                raise ConfigError(
                    f"thresholds: {len(t)} given for a chain of {len(self.chain)} models; give one per "
                    f"stage except the last ({stages}), or a single number for all"
                )
        else:
            raise ConfigError(f"thresholds must be a number or a list of numbers, got {t!r}")
        for k, v in enumerate(t):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"thresholds[{k}] must be a finite number, got {v!r}")
        self.thresholds = [float(v) for v in t]

    @property
    def models(self) -> list[str]:
        """The models the cascade may call (its chain): what every sequential policy's config names."""
        return list(self.chain)


class _CascadeSteps(Steps):
    """Stage k calls ``chain[k]``; an answer scoring at least ``thresholds[k]`` (or the last stage's)
    is accepted; a failed call or a low / NaN score moves on to the next stage."""

    def __init__(self, chain: list[str], thresholds: list[float]):
        self.chain, self.thresholds = chain, thresholds
        self.k = 0
        self.accepted = False

    def next_call(self) -> tuple[str, bool] | None:
        if self.accepted or self.k >= len(self.chain):
            return None
        return self.chain[self.k], self.k == len(self.chain) - 1

    def observe(self, model: str, completion, score: float | None) -> None:
        k = self.k
        self.k += 1
        if completion is None:
            return
        last = k == len(self.chain) - 1
        if last or (score is not None and score >= self.thresholds[k]):
            self.accepted = True


def client_models(client) -> list[str] | None:
    """The models a client can call, when it says (``client.models`` or ``client.matrix.models``)."""
    models = getattr(client, "models", None)
    if models is None:
        models = getattr(getattr(client, "matrix", None), "models", None)
    return None if models is None else list(models)


class CascadePolicy(SequentialPolicy):
    """Call ``chain[0]``, ``chain[1]``, ... until the deferral scorer accepts an answer.

    Args:
        config: a :class:`CascadeConfig`.
        scorer: the deferral scorer whose ``predict`` gives each answer's acceptance probability.

    ``run`` is vectorised per stage: one ``client.complete`` call and one ``scorer.predict`` call per
    stage for all prompts still pending, so a server client can batch the requests and a learned
    scorer its forward pass. The last stage's answers are not scored (the score could not change
    the decision; their :class:`~routerzoo.routers.policies.base.Call` has ``score=None``).
    A NaN score never passes a threshold, so the prompt escalates.
    """

    kind = "cascade"
    defers_by_threshold = True
    Config = CascadeConfig

    def __init__(self, config: CascadeConfig | None = None, scorer: DeferralScorer | None = None):
        if config is None:
            raise ConfigError("a cascade needs a config with its chain of models")
        if scorer is None:
            raise ConfigError("a cascade needs a deferral scorer to decide when to escalate")
        super().__init__(config)
        self.scorer = scorer
        #: training prices of the chain (model -> {"input", "output"} USD per 1M tokens), when calibrated
        self.prices: dict[str, dict[str, float]] = {}
        #: calibration target, data and what it realised (a calibrated cascade's record)
        self.lineage: dict = {}

    @property
    def needs_logprobs(self) -> bool:
        """Whether the clients must return token logprobs (the scorer reads them)."""
        return bool(getattr(self.scorer, "needs_logprobs", False))

    def check_client(self, client) -> None:
        """Raise UserError if the client says which models it has and a chain model is not one."""
        known = client_models(client)
        if known is None:
            return
        missing = [m for m in self.config.chain if m not in known]
        if missing:
            raise UserError(f"cascade chain model(s) {missing} are not available; available: {known}")

    def run(self, prompts: Sequence[str], client) -> list[Trace]:
        """Answer every prompt; one :class:`Trace` each.

        Args:
            prompts: n prompts.
            client: a :class:`~routerzoo.routers.policies.clients.ModelClient`.

        Returns:
            n traces. Each holds every call made for its prompt (model, USD cost, score) and the
            accepted completion; ``answer`` indexes the accepted call. A prompt whose call came
            back None (offline: no outcome recorded) stops there with ``known=False``, that call
            recorded with cost NaN (unknown) and ``completion=None``.
        """
        self.check_client(client)
        prompts = list(prompts)
        chain, thresholds = self.config.chain, self.config.thresholds
        traces = [Trace() for _ in prompts]
        pending = np.arange(len(prompts))
        for k, model in enumerate(chain):
            if pending.size == 0:
                break
            batch = [prompts[i] for i in pending]
            completions = client.complete(model, batch)
            if len(completions) != len(batch):
                raise UserError(
                    f"client returned {len(completions)} completions for {len(batch)} prompts of {model!r}"
                )
            answered = np.array([comp is not None for comp in completions], dtype=bool)
            last = k == len(chain) - 1
            scores = np.full(len(batch), np.nan)
            if not last and answered.any():
                idx = np.flatnonzero(answered)
                got = [completions[j] for j in idx]
                s = np.asarray(
                    self.scorer.predict(
                        [batch[j] for j in idx],
                        [comp.text for comp in got],
                        [comp.token_logprobs for comp in got],
                    ),
                    dtype=np.float64,
                )
                if s.shape != (idx.size,):
                    raise UserError(f"deferral scorer returned shape {s.shape} for {idx.size} answers")
                scores[idx] = s
            # the last stage returns whatever it got; NaN >= t is False, so an unscorable answer escalates
            accept = answered.copy() if last else answered & (scores >= thresholds[k])
            for j, i in enumerate(pending):
                comp = completions[j]
                trace = traces[i]
                if comp is None:
                    trace.calls.append(Call(model, float("nan"), None))
                    trace.answer = len(trace.calls) - 1
                    trace.known = False
                    continue
                score = None if last else float(scores[j])
                trace.calls.append(Call(model, float(comp.cost), score))
                if accept[j]:
                    trace.answer = len(trace.calls) - 1
                    trace.completion = comp
            pending = pending[answered & ~accept]
        return traces

    def begin(self, prompt: str) -> _CascadeSteps:
        """Stage-by-stage decisions for one prompt (what the server runs); same rule as :meth:`run`."""
        return _CascadeSteps(self.config.chain, self.config.thresholds)

    def to_dict(self) -> dict[str, Any]:
        """Kind, config and the scorer's own ``{"kind", "config"}``."""
        return {"kind": self.kind, "config": asdict(self.config), "scorer": self.scorer.to_dict()}

    @property
    def models(self) -> list[str]:
        return list(self.config.chain)

    # -- artifact: one self-contained folder (chain, thresholds, the scorer embedded, prices) --------
    def artifact(self, lineage: dict | None = None) -> tuple[dict, dict[str, np.ndarray]]:
        """(``config.json`` content, tensors) of this cascade, its scorer embedded."""
        from routerzoo import __version__
        from routerzoo.routers.deferral.artifact import scorer_section

        scorer, tensors = scorer_section(self.scorer)
        doc = {"schema_version": CASCADE_SCHEMA_VERSION, "role": "policy", "kind": self.kind, "config": asdict(self.config),
               "scorer": scorer, "prices": dict(self.prices), "lineage": dict(lineage if lineage is not None else self.lineage),
               "routerzoo_version": __version__}
        return doc, tensors

    def save(self, path, *, lineage: dict | None = None, overwrite: bool = False):
        """Write the cascade as an artifact folder, all-or-nothing; returns the path."""
        from routerzoo.routers.core.artifact import write_document

        doc, tensors = self.artifact(lineage)
        return write_document(path, doc, tensors, overwrite=overwrite, what="cascade artifact")

    @classmethod
    def from_artifact(cls, doc: dict, tensors: dict[str, np.ndarray], where: str) -> CascadePolicy:
        """The cascade a checked ``config.json`` describes (the loader's policy builder)."""
        from routerzoo.routers.core.artifact import ArtifactError
        from routerzoo.routers.core.cost import _price_pair
        from routerzoo.routers.core.typed_config import config_from_dict
        from routerzoo.routers.deferral.artifact import scorer_from_section

        config = config_from_dict(CascadeConfig, doc.get("config") or {}, f"{where}: config")
        if "scorer" not in doc:
            raise ArtifactError(f"{where}: missing field 'scorer' (a cascade artifact embeds its deferral scorer)")
        policy = cls(config, scorer_from_section(doc["scorer"], tensors, where))
        prices = doc.get("prices") or {}
        if not isinstance(prices, dict):
            raise ArtifactError(f"{where}: field 'prices' must be an object, got {prices!r}")
        try:
            policy.prices = {m: dict(zip(("input", "output"), _price_pair(p, m, f"{where}: prices"), strict=True))
                             for m, p in prices.items()}
        except UserError as exc:
            raise ArtifactError(str(exc)) from None
        unknown = sorted(set(policy.prices) - set(config.chain))
        if unknown:
            raise ArtifactError(f"{where}: prices name model(s) {unknown} outside the chain {config.chain}")
        policy.lineage = doc.get("lineage") or {}
        return policy


CASCADE_SCHEMA_VERSION = 1

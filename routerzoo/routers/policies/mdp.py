"""MDP router (AutoMix, Aggarwal et al. 2024; DER, Hu et al. 2024): decide step by step which model
to call next and when to stop.

State: the prompt's embedding (reduced by PCA fitted on the training prompts), which models have
been called, which one answered last, the deferral score of every answer so far (from a deferral
scorer, when one is configured) and whether the answers agree with the last one (the extracted
answer: choice letter, number or text; free "self-consistency across models" on tables with
responses but no logprobs). Actions: *accept* the last answer, or *call* a model not called yet
(at most ``max_calls`` calls; then accepting is forced). Reward: the accepted answer's quality
minus ``cost_weight`` × the summed cost of every call made.

The Q-function is a small MLP trained offline by fitted Q-iteration (``routerzoo.training.mdp``);
inference here is numpy (no torch needed to serve it). The policy is a
:class:`~routerzoo.routers.policies.base.SequentialPolicy`: it runs through the same
:class:`~routerzoo.routers.policies.clients.ModelClient` interface as cascades, offline (answers
looked up in a benchmark table) or against real backends, and is evaluated with
:mod:`routerzoo.evaluation.sequential` like cascades.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from routerzoo.errors import ConfigError, UserError
from routerzoo.routers.deferral.consistency import extract
from routerzoo.routers.encoders.encoder import DEFAULT_ENCODER
from routerzoo.routers.encoders.lazy import LazyEncoding
from routerzoo.routers.policies.base import Call, SequentialPolicy, Steps, Trace

__all__ = ["MDPConfig", "MDPPolicy", "state_features", "save_mdp", "load_mdp"]


@dataclass
class MDPConfig:
    """An MDP router.

    Attributes:
        models: the models it may call (default: every model of the training table).
        cost_weight: λ, quality per USD: reward = quality − λ · summed cost.
        max_calls: most calls per prompt (>= 1).
        scorer: deferral kind or scorer artifact whose scores enter the state; empty = none.
        encoder: sentence-transformers id or folder embedding prompts.
        pca_dims: prompt-embedding dimensions kept (PCA on the training prompts).
        hidden: hidden units of the Q-network.
        iterations: fitted Q-iteration rounds (>= max_calls makes the finite horizon exact).
        epochs: training epochs per round.
        lr: Adam learning rate.
        batch_size: states per gradient step.
        paths: random call sequences sampled per training prompt for states deeper than one call.
    """

    models: list[str] = field(default_factory=list)
    cost_weight: float = 0.0
    max_calls: int = 2
    scorer: str = ""
    encoder: str = DEFAULT_ENCODER
    pca_dims: int = 32
    hidden: int = 128
    iterations: int = 3
    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 64
    paths: int = 6

    def __post_init__(self):
        if self.max_calls < 1:
            raise ConfigError(f"max_calls must be >= 1, got {self.max_calls}")
        if not self.cost_weight >= 0:
            raise ConfigError(f"cost_weight must be >= 0, got {self.cost_weight}")
        for name in ("pca_dims", "hidden", "iterations", "epochs", "paths", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if len(set(self.models)) != len(self.models):
            raise ConfigError(f"models repeat: {self.models}")


def state_features(emb: np.ndarray, seqs: Sequence[Sequence[int]], scores: np.ndarray, answers: np.ndarray,
                   max_calls: int) -> np.ndarray:
    """Features of n states.

    Args:
        emb: (n, p) reduced prompt embeddings.
        seqs: n call sequences (model indices, in calling order).
        scores: (n, m) deferral score of each model's answer (read only where called).
        answers: (n, m) object array of extracted answers (None when unknown; read only where called).
        max_calls: the horizon (the depth feature is ``len(seq) / max_calls``).

    Returns:
        (n, p + 4m + 2): embedding, called mask, last-called one-hot, scores of called answers,
        agreement of each called answer with the last, share of earlier answers agreeing with the
        last, depth.
    """
    n, m = scores.shape
    out = np.zeros((n, emb.shape[1] + 4 * m + 2), dtype=np.float64)
    out[:, : emb.shape[1]] = emb
    o = emb.shape[1]
    for i, seq in enumerate(seqs):
        if not seq:
            continue
        last = seq[-1]
        for j in seq:
            out[i, o + j] = 1.0
            out[i, o + 2 * m + j] = scores[i, j]
            same = answers[i, j] is not None and answers[i, j] == answers[i, last]
            out[i, o + 3 * m + j] = float(same)
        out[i, o + m + last] = 1.0
        if len(seq) > 1:
            out[i, o + 4 * m] = (out[i, o + 3 * m: o + 4 * m].sum() - 1.0) / (len(seq) - 1)
        out[i, o + 4 * m + 1] = len(seq) / max_calls
    return out


def valid_actions(seqs: Sequence[Sequence[int]], m: int, max_calls: int) -> np.ndarray:
    """(n, m + 1) bool: column 0 accept (needs an answer), column 1 + k call model k (not yet called, under the cap)."""
    ok = np.zeros((len(seqs), m + 1), dtype=bool)
    for i, seq in enumerate(seqs):
        ok[i, 0] = len(seq) > 0
        if len(seq) < max_calls:
            ok[i, 1:] = True
            ok[i, [1 + j for j in seq]] = False
    return ok


class MDPPolicy(LazyEncoding, SequentialPolicy):
    """Greedy policy of a fitted Q-network.

    Args:
        config: an :class:`MDPConfig` (``models`` filled in by training).
        params: the Q-network and PCA arrays (``pca_mean``, ``pca_components``, ``w1``, ``b1``,
            ``w2``, ``b2``, ``w3``, ``b3``).
        scorer: the deferral scorer named by ``config.scorer`` (None when empty).
    """

    kind = "mdp"
    Config = MDPConfig

    def __init__(self, config: MDPConfig | None = None, params: dict[str, np.ndarray] | None = None, scorer=None):
        super().__init__(config)
        self.params = params
        self.scorer = scorer
        self._encoder = None
        self.lineage: dict = {}

    # -- the Q-function -------------------------------------------------------------------------------
    def reduce(self, emb: np.ndarray) -> np.ndarray:
        """(n, d) embeddings → (n, p) PCA coordinates."""
        p = self.params
        return (np.asarray(emb, dtype=np.float64) - p["pca_mean"]) @ p["pca_components"].T

    def q_values(self, feats: np.ndarray) -> np.ndarray:
        """(n, f) state features → (n, m + 1) action values."""
        p = self.params
        h = np.maximum(feats @ p["w1"].T + p["b1"], 0.0)
        h = np.maximum(h @ p["w2"].T + p["b2"], 0.0)
        return h @ p["w3"].T + p["b3"]

    @property
    def models(self) -> list[str]:
        """The models it may call."""
        return list(self.config.models)

    def choose(self, feats: np.ndarray, seqs) -> np.ndarray:
        """(n,) greedy actions (0 accept, 1 + k call model k) among the valid ones."""
        q = self.q_values(feats)
        q[~valid_actions(seqs, len(self.config.models), self.config.max_calls)] = -np.inf
        return np.argmax(q, axis=1)

    # -- running ---------------------------------------------------------------------------------------
    def run(self, prompts: Sequence[str], client) -> list[Trace]:
        """Answer every prompt: call models as the Q-network says until it accepts.

        Batched per step and model: one ``client.complete`` per (step, model) over the prompts that
        chose it, one scorer call per (step, model).
        """
        if self.params is None:
            raise UserError("the MDP router is not trained (routerzoo train --router mdp)")
        prompts = list(prompts)
        models = self.config.models
        n, m = len(prompts), len(models)
        traces = [Trace() for _ in prompts]
        if not n:
            return traces
        emb = self.reduce(self.embed(prompts))
        seqs: list[list[int]] = [[] for _ in range(n)]
        scores = np.zeros((n, m))
        answers = np.full((n, m), None, dtype=object)
        last_comp: list = [None] * n
        pending = np.arange(n)
        while pending.size:
            feats = state_features(emb[pending], [seqs[i] for i in pending], scores[pending], answers[pending],
                                   self.config.max_calls)
            act = self.choose(feats, [seqs[i] for i in pending])
            for i in pending[act == 0]:
                traces[i].completion = last_comp[i]
                traces[i].answer = len(traces[i].calls) - 1
            still = []
            for k in np.unique(act[act > 0]) - 1:
                idx = pending[act == k + 1]
                comps = client.complete(models[k], [prompts[i] for i in idx])
                if len(comps) != idx.size:
                    raise UserError(f"client returned {len(comps)} completions for {idx.size} prompts of {models[k]!r}")
                got = [j for j, c in enumerate(comps) if c is not None]
                s = np.zeros(len(comps))
                if self.scorer is not None and got:
                    s[got] = self.scorer.predict([prompts[idx[j]] for j in got], [comps[j].text for j in got],
                                                 [comps[j].token_logprobs for j in got])
                for j, i in enumerate(idx):
                    c = comps[j]
                    if c is None:  # offline: no outcome recorded; the prompt cannot be scored
                        traces[i].calls.append(Call(models[k], float("nan"), None))
                        traces[i].answer, traces[i].known, traces[i].completion = len(traces[i].calls) - 1, False, None
                        continue
                    seqs[i].append(int(k))
                    scores[i, k] = s[j]
                    answers[i, k] = extract(c.text)
                    traces[i].calls.append(Call(models[k], float(c.cost), float(s[j]) if self.scorer else None))
                    last_comp[i] = c
                    still.append(i)
            pending = np.array(sorted(still), dtype=int)
        return traces

    def begin(self, prompt: str) -> _MDPSteps:
        """Step-by-step decisions for one prompt (embeds it: call off the event loop)."""
        if self.params is None:
            raise UserError("the MDP router is not trained (routerzoo train --router mdp)")
        return _MDPSteps(self, self.reduce(self.embed([prompt]))[0])

    def to_dict(self) -> dict:
        return {"kind": self.kind, "config": asdict(self.config)}

    @classmethod
    def from_artifact(cls, doc: dict, tensors: dict[str, np.ndarray], where: str) -> MDPPolicy:
        return mdp_from_artifact(doc, tensors, where)

    def save(self, path: str | os.PathLike, *, lineage: dict | None = None, overwrite: bool = False) -> Path:
        return save_mdp(self, path, lineage=lineage, overwrite=overwrite)


class _MDPSteps(Steps):
    """The greedy Q-policy for one prompt; a model whose backend failed is never chosen again."""

    def __init__(self, policy: MDPPolicy, emb: np.ndarray):
        m = len(policy.config.models)
        self.policy, self.emb = policy, emb
        self.seq: list[int] = []
        self.scores = np.zeros((1, m))
        self.answers = np.full((1, m), None, dtype=object)
        self.failed: set[int] = set()

    def next_call(self) -> tuple[str, bool] | None:
        p = self.policy
        m, cap = len(p.config.models), p.config.max_calls
        feats = state_features(self.emb[None, :], [self.seq], self.scores, self.answers, cap)
        q = p.q_values(feats)[0]
        ok = valid_actions([self.seq], m, cap)[0]
        for k in self.failed:
            ok[1 + k] = False
        if not ok.any():
            return None
        a = int(np.argmax(np.where(ok, q, -np.inf)))
        if a == 0:
            return None
        return p.config.models[a - 1], len(self.seq) + 1 >= cap

    def observe(self, model: str, completion, score: float | None) -> None:
        k = self.policy.config.models.index(model)
        if completion is None:
            self.failed.add(k)
            return
        self.seq.append(k)
        self.scores[0, k] = 0.0 if score is None else score
        self.answers[0, k] = extract(completion.text)


# -- artifacts ---------------------------------------------------------------------------------------------
MDP_SCHEMA_VERSION = 1
_PARAMS = ("pca_mean", "pca_components", "w1", "b1", "w2", "b2", "w3", "b3")


def mdp_config(policy: MDPPolicy, lineage: dict | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """(``config.json`` content, tensors) of an MDP router; its scorer, if any, is embedded."""
    from routerzoo import __version__
    from routerzoo.routers.deferral.artifact import scorer_section

    cfg = {"schema_version": MDP_SCHEMA_VERSION, "role": "policy", "kind": "mdp", "config": asdict(policy.config),
           "lineage": dict(lineage if lineage is not None else policy.lineage), "routerzoo_version": __version__}
    tensors = {k: policy.params[k] for k in _PARAMS}
    if policy.scorer is not None:  # self-contained: the scorer travels inside, not as a path to a folder
        cfg["scorer"], scorer_tensors = scorer_section(policy.scorer)
        tensors |= scorer_tensors
    return cfg, tensors


def save_mdp(policy: MDPPolicy, path: str | os.PathLike, *, lineage: dict | None = None, overwrite: bool = False) -> Path:
    """``config.json`` + ``weights.safetensors`` (nothing pickled), written all-or-nothing."""
    from routerzoo.routers.core.artifact import write_document

    cfg, tensors = mdp_config(policy, lineage)
    return write_document(path, cfg, tensors, overwrite=overwrite, what="MDP router artifact")


def mdp_from_artifact(doc: dict, tensors: dict[str, np.ndarray], where: str) -> MDPPolicy:
    """The MDP router a checked ``config.json`` and its tensors describe (the loader's policy builder)."""
    from routerzoo.routers.core.artifact import ArtifactError, check_values
    from routerzoo.routers.core.typed_config import config_from_dict

    config = config_from_dict(MDPConfig, doc.get("config") or {}, f"{where}: config")
    missing = [k for k in _PARAMS if k not in tensors]
    if missing:
        raise ArtifactError(f"{where}: weights lack tensor(s) {missing}")
    params = {k: np.asarray(tensors[k], dtype=np.float64) for k in _PARAMS}
    check_values(params, f"{where}: weights")
    m = len(config.models)
    if params["w3"].shape[0] != m + 1:
        raise ArtifactError(f"{where}: Q-network has {params['w3'].shape[0]} outputs for {m} models (+ accept)")
    if m < 1:
        raise ArtifactError(f"{where}: config.models is empty; an MDP router calls at least one model")
    scorer = None
    if "scorer" in doc:
        from routerzoo.routers.deferral.artifact import scorer_from_section

        scorer = scorer_from_section(doc["scorer"], tensors, where)
    elif config.scorer:  # written before scorers were embedded: resolved as configured
        from routerzoo.routers.deferral.artifact import resolve_deferral

        scorer = resolve_deferral(config.scorer)
    policy = MDPPolicy(config, params, scorer)
    policy.lineage = doc.get("lineage") or {}
    return policy


def load_mdp(path: str | os.PathLike, *, tracking_uri: str | None = None):
    """Load a sequential policy artifact (the MDP router or a calibrated cascade) from a folder or URI."""
    from routerzoo.routers.core.loader import load

    return load(path, role="policy", tracking_uri=tracking_uri)

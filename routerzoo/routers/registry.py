"""The one registry of kinds: routers, deferral scorers and policies.

Each entry names, as lazy ``module:attr`` references, the kind's typed config dataclass (what the
artifact stores, with the one set of defaults), its inference class, and its fit function (None for
kinds that are not trained). Nothing is imported until a kind is used, so listing kinds is cheap and
inference never imports training code.

Adding a router: write ``routerzoo/routers/kinds/<name>.py`` (a deferral scorer: ``deferral/<name>.py``) (config dataclass, router class, fit
function; a Lightning module goes in ``routerzoo/training/``), add one line below and a
``configs/routers/<name>.yaml``. The contract suite (``tests/test_router_contract.py``) runs over
every router registered here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from routerzoo.errors import UserError

ROLES = ("router", "deferral", "policy")


@dataclass(frozen=True)
class KindSpec:
    """Where a kind's parts live (imported on demand).

    Attributes:
        role: "router" (quality/cost scorer), "deferral" (deferral scorer) or "policy".
        config: ``module:Class`` of the typed config dataclass.
        cls: ``module:Class`` of the inference class.
        fit: ``module:function`` ``fit(config, ctx) -> (fitted, metrics)``, or None when not trained.
        summary: one line for ``routerzoo routers``.
        trains_from: what the fit reads: ``"outcomes"`` (benchmark tables) and/or ``"pairs"``
            (preference pairs). Generic code checks a dataset against this before fitting, so a kind
            that cannot learn from what it is given refuses it with one line instead of a
            per-kind branch.
        reads: what inference reads per query: ``"prompt"``, ``"response"``, ``"logprobs"`` (token
            logprobs of the response), ``"samples"`` (k sampled responses).
        mode: ``"one-shot"`` (scores every candidate from the prompt), ``"batch"`` (decides over a
            whole batch) or ``"sequential"`` (calls models in turn).
    """

    role: str
    config: str
    cls: str
    fit: str | None
    summary: str
    trains_from: tuple[str, ...] = ("outcomes",)
    reads: tuple[str, ...] = ("prompt",)
    mode: str = "one-shot"

    def __post_init__(self):
        # a typo here would silently change what the contract suite expects
        assert self.role in ROLES, self.role
        assert set(self.trains_from) <= {"outcomes", "pairs"}, self.trains_from
        assert set(self.reads) <= {"prompt", "response", "logprobs", "samples"}, self.reads
        assert self.mode in ("one-shot", "batch", "sequential"), self.mode

    @staticmethod
    def _resolve(ref: str):
        module, _, attr = ref.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if (exc.name or "").startswith("routerzoo"):
                raise
            from routerzoo.extras import missing_extra

            raise missing_extra(exc, ref) from None

    def load_config(self) -> type:
        return self._resolve(self.config)

    def load_class(self) -> type:
        return self._resolve(self.cls)

    def load_fit(self):
        if self.fit is None:
            raise UserError(f"{self.cls} is not trained (no fit function)")
        return self._resolve(self.fit)


_R = "routerzoo.routers"

KINDS: dict[str, KindSpec] = {
    # routers (quality/cost scorers)
    "knn": KindSpec("router", f"{_R}.kinds.knn:KNNConfig", f"{_R}.kinds.knn:KNNRouter", f"{_R}.kinds.knn:fit_knn", "k-nearest neighbours on prompt embeddings (k by validation AIQ)"),
    "mlp": KindSpec("router", f"{_R}.kinds.mlp:MLPConfig", f"{_R}.kinds.mlp:MLPRouter", "routerzoo.training.mlp:fit_mlp", "MLP per-model success classifier with a cost head (Lightning)"),
    "routerdc": KindSpec("router", f"{_R}.kinds.routerdc:RouterDCConfig", f"{_R}.kinds.routerdc:RouterDCRouter", "routerzoo.training.routerdc:fit_routerdc", "dual-contrastive router (RouterDC): learned model embeddings x projected prompt, sample-LLM + sample-sample contrastive losses (Lightning)"),
    "finetune": KindSpec("router", f"{_R}.kinds.finetune:FinetuneConfig", f"{_R}.kinds.finetune:FinetuneRouter", "routerzoo.training.finetune:fit_finetune", "transformer encoder fine-tuned end to end with a multi-label head over the candidates (Lightning)"),
    "eagle": KindSpec("router", f"{_R}.kinds.eagle:EagleConfig", f"{_R}.kinds.eagle:EagleRouter", f"{_R}.kinds.eagle:fit_eagle", "Eagle: global Elo mixed with local Elo over the nearest training prompts (P and N by validation; pairs or outcomes)", trains_from=("outcomes", "pairs")),
    "elo": KindSpec("router", f"{_R}.kinds.elo:EloConfig", f"{_R}.kinds.elo:EloRouter", f"{_R}.kinds.elo:fit_elo", "global Bradley-Terry (Elo) ratings from preference pairs", trains_from=("outcomes", "pairs")),
    "best-single": KindSpec("router", f"{_R}.kinds.baselines:BestSingleConfig", f"{_R}.kinds.baselines:BestSingleRouter", f"{_R}.kinds.baselines:fit_best_single", "each model's mean training quality (the zero router)"),
    "random": KindSpec("router", f"{_R}.kinds.baselines:RandomConfig", f"{_R}.kinds.baselines:RandomRouter", f"{_R}.kinds.baselines:fit_random", "random scores (the floor)", trains_from=("outcomes", "pairs")),
    "oracle": KindSpec("router", f"{_R}.kinds.baselines:OracleConfig", f"{_R}.kinds.baselines:OracleRouter", f"{_R}.kinds.baselines:fit_oracle", "true outcomes of seen prompts (the ceiling; evaluation only)"),
    "mf": KindSpec("router", f"{_R}.kinds.mf:MFConfig", f"{_R}.kinds.mf:MFRouter", "routerzoo.training.mf:fit_mf", "matrix factorisation: model embeddings x projected prompt embedding (BCE on outcomes, Bradley-Terry on pairs)", trains_from=("outcomes", "pairs")),
    "cluster": KindSpec("router", f"{_R}.kinds.cluster:ClusterConfig", f"{_R}.kinds.cluster:ClusterRouter", f"{_R}.kinds.cluster:fit_cluster", "k-means on prompt embeddings, each cluster's quality and cost per model (k by validation AIQ)"),
    "sw-elo": KindSpec("router", f"{_R}.kinds.sw_elo:SWEloConfig", f"{_R}.kinds.sw_elo:SWEloRouter", f"{_R}.kinds.sw_elo:fit_sw_elo", "similarity-weighted Bradley-Terry ratings per prompt (RouteLLM SW ranking; pairs or outcomes)", trains_from=("outcomes", "pairs")),
    "stack": KindSpec("router", f"{_R}.kinds.stack:StackConfig", f"{_R}.kinds.stack:StackRouter", f"{_R}.kinds.stack:fit_stack", "convex combination of other routers' predictions, weights fitted on validation", trains_from=("outcomes", "pairs")),
    "scalarised": KindSpec("router", f"{_R}.kinds.scalarised:ScalarisedConfig", f"{_R}.kinds.scalarised:ScalarisedRouter", "routerzoo.training.scalarised:fit_scalarised", "scalarised reward regression: quality - λ·cost per model with λ an input, one model for every cost weight (MetaLLM-style, Lightning)"),
    "zooter": KindSpec("router", f"{_R}.kinds.zooter:ZooterConfig", f"{_R}.kinds.zooter:ZooterRouter", "routerzoo.training.zooter:fit_zooter", "reward distillation: softmax over candidates, KL to each prompt's reward distribution, optional tag enhancement (Zooter, Lightning)"),
    "logreg": KindSpec("router", f"{_R}.kinds.logreg:LogRegConfig", f"{_R}.kinds.logreg:LogRegRouter", f"{_R}.kinds.logreg:fit_logreg", "one L2-regularised logistic regression per candidate on prompt embeddings (numpy, no Lightning)"),
    "linucb": KindSpec("router", f"{_R}.kinds.linucb:LinUCBConfig", f"{_R}.kinds.linucb:LinUCBRouter", f"{_R}.kinds.linucb:fit_linucb", "contextual bandit (LinUCB or Thompson sampling) on prompt embeddings: offline replay, then update() online"),
    # deferral scorers
    "logprob-confidence": KindSpec("deferral", f"{_R}.deferral.logprob_confidence:LogprobConfidenceConfig", f"{_R}.deferral.logprob_confidence:LogprobConfidence", None, "confidence from the answer's token logprobs (unsupervised)", reads=("prompt", "response", "logprobs")),
    "token-quantile": KindSpec("deferral", f"{_R}.deferral.token_quantile:TokenQuantileConfig", f"{_R}.deferral.token_quantile:TokenQuantileScorer", f"{_R}.deferral.token_quantile:fit_token_quantile", "logistic regression on token-logprob quantiles (Gupta et al. 2024)", reads=("prompt", "response", "logprobs")),
    "posthoc-deferral": KindSpec("deferral", f"{_R}.deferral.posthoc:PostHocDeferralConfig", f"{_R}.deferral.posthoc:PostHocDeferral", f"{_R}.deferral.posthoc:fit_posthoc_deferral", "learned rule on the answer's confidence and the next model's predicted success (Jitkrittum et al. 2024)", reads=("prompt",)),  # token logprobs sharpen it when present; not required
    "consistency": KindSpec("deferral", f"{_R}.deferral.consistency:ConsistencyConfig", f"{_R}.deferral.consistency:ConsistencyScorer", None, "agreement among k sampled answers (unsupervised; the server asks for n samples)", reads=("prompt", "samples")),
    "prompt-response": KindSpec("deferral", f"{_R}.deferral.prompt_response:PromptResponseConfig", f"{_R}.deferral.prompt_response:PromptResponseScorer", f"{_R}.deferral.prompt_response:fit_prompt_response", "logistic head on frozen MiniLM embeddings of (prompt, response): no logprobs needed (FrugalGPT-style)", reads=("prompt", "response")),
    # policies
    "argmax": KindSpec("policy", f"{_R}.policies.argmax:ArgmaxConfig", f"{_R}.policies.argmax:ArgmaxPolicy", None, "argmax of quality - λ·cost per prompt"),
    "threshold": KindSpec("policy", f"{_R}.policies.threshold:ThresholdConfig", f"{_R}.policies.threshold:ThresholdPolicy", None, "two models: strong when q_strong - q_weak >= threshold"),
    "assignment": KindSpec("policy", f"{_R}.policies.assignment:AssignmentConfig", f"{_R}.policies.assignment:AssignmentPolicy", None, "batch assignment under a budget and per-model capacity (MILP)", mode="batch"),
    "cascade": KindSpec("policy", f"{_R}.policies.cascade:CascadeConfig", f"{_R}.policies.cascade:CascadePolicy", None, "call models in order, escalate while the deferral scorer rejects", mode="sequential"),
    "mdp": KindSpec("policy", f"{_R}.policies.mdp:MDPConfig", f"{_R}.policies.mdp:MDPPolicy", "routerzoo.training.mdp:fit_mdp", "MDP router: accept or call model k, from prompt, calls so far and their scores (fitted Q-iteration, Lightning)", mode="sequential"),
}


#: What ``routerzoo train`` trains when no router is named: ``auto`` (routerzoo/training/auto.py,
#: not a kind but a cross-validated search whose artifact is one kind or a stack). No single kind is
#: best across datasets, and kNN, the previous default, was not either: on a development
#: meta-benchmark (bench/auto_selection.py: MMLU-Pro 9- and 11-model variants, the MMLU-Pro sample,
#: RouterArena, RouteLLM GSM8K) auto was level with kNN on every test split (paired 95% intervals
#: include 0) and ahead on the sample (+16.3 points, [+4.5, +28.8]); mean test gap closed 10.9% vs
#: kNN's 7.8%. See the README table.
DEFAULT_ROUTER = "auto"


def kinds(role: str | None = None) -> dict[str, KindSpec]:
    """Registered kinds, optionally of one role."""
    return {name: spec for name, spec in KINDS.items() if role is None or spec.role == role}


def get_kind(name: str, role: str | None = None) -> KindSpec:
    """The spec of kind ``name`` (of ``role`` if given), or a UserError listing the choices."""
    spec = KINDS.get(name) if isinstance(name, str) else None
    if spec is None or (role is not None and spec.role != role):
        raise UserError(f"unknown {role or 'kind'} {name!r}; registered: {sorted(kinds(role))}")
    return spec


def load_policy(data, where: str = "policy"):
    """A batch policy from ``{"kind": ..., "config": {...}}`` (as artifacts store it)."""
    from routerzoo.routers.core.typed_config import config_from_dict

    if not isinstance(data, dict) or "kind" not in data:
        raise UserError(f"{where}: expected an object with 'kind' and 'config', got {data!r}")
    spec = get_kind(data["kind"], role="policy")
    cls = spec.load_class()
    if not hasattr(cls, "decide"):
        raise UserError(f"{where}: {data['kind']!r} is a sequential policy, not a batch policy a router can default to")
    return cls(config_from_dict(spec.load_config(), data.get("config") or {}, f"{where}.config"))

"""Policies turn predictions (or observed answers) into decisions.

Two shapes of policy:

* :class:`BatchPolicy`: one decision per prompt from a :class:`~routerzoo.routers.core.prediction.Prediction`
  of the whole batch. λ-argmax and the two-model threshold decide each prompt alone; an assignment
  under a budget or per-model capacity decides the batch jointly.
* :class:`SequentialPolicy`: calls a model through a :class:`~routerzoo.routers.policies.clients.ModelClient`,
  looks at the answer, and stops or calls another model (cascades, MDP routers). The same policy runs
  offline (answers looked up in a dataset) and in the server (real HTTP calls); it returns one
  :class:`Trace` per prompt with every call made and their summed cost.

Every policy has a typed config dataclass (``Config``) that is what an artifact stores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

from routerzoo.routers.core.prediction import Prediction


class Policy:
    """What every policy shares: a kind, a typed config, and its JSON form for artifacts.

    Args:
        config: the policy's typed config (an instance of ``Config``); None for its defaults.
    """

    kind: ClassVar[str] = ""
    Config: ClassVar[type]

    def __init__(self, config=None):
        self.config = config if config is not None else self.Config()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": asdict(self.config)}


class BatchPolicy(Policy):
    """Decides a batch at once from predictions."""

    def decide(self, pred: Prediction, models: list[str]) -> np.ndarray:
        """Model index per prompt.

        Args:
            pred: predictions of shape (n, m).
            models: the m candidate names, in column order.

        Returns:
            (n,) int indices into ``models``.
        """
        raise NotImplementedError


@dataclass
class Call:
    """One model call made by a sequential policy.

    Attributes:
        model: the model called.
        cost: its USD cost (observed offline; estimated from usage and prices in the server).
        score: the deferral scorer's acceptance probability for the answer, if one was computed.
    """

    model: str
    cost: float
    score: float | None = None


@dataclass
class Trace:
    """What a sequential policy did for one prompt.

    Attributes:
        calls: every call, in order.
        answer: index into ``calls`` of the answer returned (normally the last).
        completion: the accepted completion (whatever the client returned), or None.
        known: False when the client could not answer a call (offline: the dataset has no outcome
            for that model on that prompt); such a prompt cannot be scored.
    """

    calls: list[Call] = field(default_factory=list)
    answer: int = -1
    completion: Any = None
    known: bool = True

    @property
    def cost(self) -> float:
        """Summed cost of every call made."""
        return float(sum(c.cost for c in self.calls))

    @property
    def model(self) -> str | None:
        """The model whose answer was returned."""
        return self.calls[self.answer].model if self.calls else None


class Steps:
    """One prompt's decisions, taken one call at a time (how the server runs a sequential policy).

    The caller alternates :meth:`next_call` (which model to call next, or None: return the last
    answer observed) and :meth:`observe` (what that call gave). Offline, :meth:`SequentialPolicy.run`
    batches the same decisions over many prompts.
    """

    def next_call(self) -> tuple[str, bool] | None:
        """(model, final) to call next, ``final`` when its answer will be returned whatever it is
        (so a server may stream it); None when the last observed answer is accepted (or nothing is left)."""
        raise NotImplementedError

    def observe(self, model: str, completion, score: float | None) -> None:
        """Record a call's result: its :class:`~routerzoo.routers.policies.clients.Completion`
        (None when the backend failed) and the deferral score of its answer (None if not scored)."""
        raise NotImplementedError


class SequentialPolicy(Policy):
    """Calls models one after another until an answer is accepted."""

    #: the deferral scorer whose scores the decisions read (None: none)
    scorer = None
    #: whether an answer is passed over because its score fell below a threshold (a cascade), not
    #: by a learnt decision (the MDP router): what the server's deferral metric calls the reason
    defers_by_threshold: ClassVar[bool] = False

    def begin(self, prompt: str) -> Steps:
        """The step-by-step decisions for one prompt (may run an encoder: call it off the event loop)."""
        raise NotImplementedError

    def run(self, prompts: list[str], client) -> list[Trace]:
        """Answer every prompt; one :class:`Trace` each.

        Args:
            prompts: n prompts.
            client: a :class:`~routerzoo.routers.policies.clients.ModelClient`.
        """
        raise NotImplementedError

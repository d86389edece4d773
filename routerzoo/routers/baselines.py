"""Non-learned baselines: random, best single model, oracle."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from routerzoo.data.embeddings import text_keys
from routerzoo.data.splits import normalise_text
from routerzoo.routers.base import Prediction, Router


class RandomRouter(Router):
    """Uniform random quality scores, deterministic per (prompt, model, seed).

    Swept over the cost weight it mixes models at random, which traces the straight line between
    single models: the floor any learned router must rise above. params: ``seed``.
    """

    kind = "random"

    def predict(self, prompts: Sequence[str]) -> Prediction:
        seed = int(self.params.get("seed", 0))
        m = len(self.models)
        quality = np.empty((len(prompts), m))
        for i, prompt in enumerate(prompts):
            digest = hashlib.sha256(f"{seed}\0{prompt}".encode()).digest()
            quality[i] = np.random.default_rng(int.from_bytes(digest[:8], "big")).random(m)
        return Prediction(quality, self._default_cost(len(prompts)))


class BestSingleRouter(Router):
    """Every prompt gets the same prediction: each model's mean training quality and cost.

    With λ = 0 it always picks the model that was best on training data; sweeping λ walks along the
    single models (the "zero router").
    """

    kind = "best-single"

    def fit_arrays(self, quality: np.ndarray) -> BestSingleRouter:
        """quality: (N, m) training outcomes, NaN where missing."""
        self.mean_quality_ = np.nanmean(np.asarray(quality, dtype=np.float64), axis=0)
        return self

    def state(self) -> dict[str, np.ndarray]:
        return {"mean_quality": self.mean_quality_}

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        self.mean_quality_ = np.asarray(tensors["mean_quality"], dtype=np.float64)

    def predict(self, prompts: Sequence[str]) -> Prediction:
        n = len(prompts)
        return Prediction(np.broadcast_to(self.mean_quality_, (n, len(self.models))).copy(), self._default_cost(n))


class OracleRouter(Router):
    """Looks the answer up: the true quality and cost of every prompt it has seen.

    An upper bound for evaluation, not a deployable router: prompts it has not seen (by normalised
    text) get the mean quality and cost.
    """

    kind = "oracle"

    def fit_arrays(self, prompts: Sequence[str], quality: np.ndarray, cost: np.ndarray) -> OracleRouter:
        """prompts (N,); quality, cost (N, m) with NaN where missing."""
        self.keys_ = text_keys([normalise_text(p) for p in prompts])
        self.quality_ = np.asarray(quality, dtype=np.float64)
        self.cost_ = np.asarray(cost, dtype=np.float64)
        return self

    def state(self) -> dict[str, np.ndarray]:
        return {"keys": self.keys_, "quality": self.quality_, "cost": self.cost_}

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        self.keys_, self.quality_, self.cost_ = tensors["keys"], tensors["quality"], tensors["cost"]

    def predict(self, prompts: Sequence[str]) -> Prediction:
        index = {k.tobytes(): i for i, k in enumerate(self.keys_)}
        mean_q = np.nanmean(self.quality_, axis=0)
        n, m = len(prompts), len(self.models)
        quality = np.broadcast_to(mean_q, (n, m)).copy()
        cost = self._default_cost(n)
        for row, key in enumerate(text_keys([normalise_text(p) for p in prompts])):
            i = index.get(key.tobytes())
            if i is not None:
                quality[row] = np.where(np.isnan(self.quality_[i]), 0.0, self.quality_[i])
                cost[row] = np.where(np.isnan(self.cost_[i]), self.model_costs, self.cost_[i])
        return Prediction(quality, cost)

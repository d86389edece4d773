"""The cost side of every router: predicted USD per prompt and model, at a price table that can change.

A router's quality scorer may predict a per-prompt cost (kNN averages its neighbours', the MLP has a
cost head) or none (then each model's mean training cost is used); either way that cost is in the
training data's prices. The :class:`CostModel` reprices it for the prices in force now: each model's
training cost splits into an input part and an output part by its mean token counts and the training
prices, and each part is scaled by the new price over the old. With unchanged prices the factor is 1,
so decisions equal the training-time ones; with new prices (``--prices`` at eval and serve time, or
:meth:`Router.with_prices`) decisions change without retraining.

A model can be repriced only when the training data carried its token counts and prices; asking for
new prices for any other model is an error that names it, never a silent guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from routerzoo.errors import UserError

PER_MILLION = 1_000_000.0


class PriceError(UserError):
    """Prices that do not fit the router (unknown model, missing token counts, bad numbers)."""


def _price_pair(entry, model: str, where: str) -> tuple[float, float]:
    if hasattr(entry, "input") and hasattr(entry, "output"):  # a routerzoo.data.prices.Price
        pin, pout = entry.input, entry.output
    elif isinstance(entry, dict):
        pin, pout = entry.get("input"), entry.get("output")
    else:
        raise PriceError(f"{where}: price of {model!r} must have 'input' and 'output' ($ per 1M tokens), got {entry!r}")
    for name, v in (("input", pin), ("output", pout)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise PriceError(f"{where}: {name} price of {model!r} must be a number >= 0, got {v!r}")
    return float(pin), float(pout)


@dataclass
class CostModel:
    """Per-model cost statistics from training, and the price table in force.

    Attributes:
        models: the m candidates, in column order.
        mean_cost: (m,) mean USD per prompt at training prices (NaN: unknown, e.g. preference data).
        mean_input_tokens: (m,) mean prompt tokens in training (NaN: unknown).
        mean_output_tokens: (m,) mean completion tokens in training (NaN: unknown).
        prices: training prices, model → {"input", "output"} in USD per 1M tokens (may lack models).
        current: prices in force, same form; None means the training prices.
    """

    models: list[str]
    mean_cost: np.ndarray
    mean_input_tokens: np.ndarray
    mean_output_tokens: np.ndarray
    prices: dict = field(default_factory=dict)
    current: dict | None = None

    def __post_init__(self):
        m = len(self.models)
        for name in ("mean_cost", "mean_input_tokens", "mean_output_tokens"):
            arr = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1)
            if arr.shape != (m,):
                raise PriceError(f"cost model: {name} has {arr.shape[0]} entries for {m} models")
            if np.any(arr[~np.isnan(arr)] < 0) or np.isinf(arr).any():
                raise PriceError(f"cost model: {name} must hold finite numbers >= 0")
            setattr(self, name, arr)

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def fit(cls, models: list[str], cost: np.ndarray | None, prices: dict | None = None,
            input_tokens: np.ndarray | None = None, output_tokens: np.ndarray | None = None) -> CostModel:
        """Statistics from training outcomes.

        Args:
            models: m names.
            cost: (N, m) observed USD, NaN where missing; None when the data has no costs.
            prices: the dataset's price table (model → {"input", "output", ...}).
            input_tokens, output_tokens: (N, m) token counts, NaN where unknown, or None.
        """
        m = len(models)

        def colmean(a):
            if a is None:
                return np.full(m, np.nan)
            a = np.asarray(a, dtype=np.float64)
            with np.errstate(invalid="ignore"):
                counts = (~np.isnan(a)).sum(axis=0)
                sums = np.nansum(a, axis=0)
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

        clean = {}
        for model, entry in (prices or {}).items():
            if model in models and isinstance(entry, dict) and entry.get("input") is not None and entry.get("output") is not None:
                clean[model] = {"input": float(entry["input"]), "output": float(entry["output"])}
        return cls(list(models), colmean(cost), colmean(input_tokens), colmean(output_tokens), clean)

    def with_prices(self, prices: dict, where: str = "prices") -> CostModel:
        """A copy with ``prices`` (model → {"input", "output"} or a Price) in force.

        Models not named keep their current prices. Raises :class:`PriceError` for a model that is
        not a candidate, or that cannot be repriced because training saw no token counts or prices.
        """
        unknown = sorted(set(prices) - set(self.models))
        if unknown:
            raise PriceError(f"{where}: {unknown} not candidate model(s) of this router; candidates: {self.models}")
        current = dict(self.current or self.prices)
        for model, entry in prices.items():
            pin, pout = _price_pair(entry, model, where)
            j = self.models.index(model)
            if model not in self.prices or np.isnan(self.mean_input_tokens[j]) or np.isnan(self.mean_output_tokens[j]):
                raise PriceError(
                    f"{where}: cannot reprice {model!r}: its training data carried no token counts and prices, "
                    "so its cost cannot be split into input and output (retrain on data with token counts)"
                )
            current[model] = {"input": pin, "output": pout}
        return CostModel(self.models, self.mean_cost, self.mean_input_tokens, self.mean_output_tokens,
                         self.prices, current)

    # -- prediction ------------------------------------------------------------------------------
    @property
    def known(self) -> bool:
        """Whether any cost information exists (False for routers trained on preference pairs only)."""
        return bool(np.isfinite(self.mean_cost).any())

    def _expected(self, table: dict, j: int) -> float:
        p = table[self.models[j]]
        return (self.mean_input_tokens[j] * p["input"] + self.mean_output_tokens[j] * p["output"]) / PER_MILLION

    def reprice(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-model (scale, replacement): cost_now = scale · cost_at_training_prices, except where
        ``replacement`` is finite (a model free in training that costs something now)."""
        m = len(self.models)
        scale, replace = np.ones(m), np.full(m, np.nan)
        if self.current is None:
            return scale, replace
        for j, model in enumerate(self.models):
            if model not in self.current or self.current[model] == self.prices.get(model):
                continue
            old, new = self._expected(self.prices, j), self._expected(self.current, j)
            if old > 0:
                scale[j] = new / old
            else:
                replace[j] = new
        return scale, replace

    def unknown_models(self) -> list[str]:
        """Models whose cost nothing tells: no training cost and no price in force (their predicted
        cost is 0, so a cost weight, a cost target or a budget cannot act on them)."""
        _, replace = self.reprice()
        return [m for m, c, r in zip(self.models, self.mean_cost, replace, strict=True) if np.isnan(c) and np.isnan(r)]

    def predict(self, cost: np.ndarray | None, n: int) -> np.ndarray:
        """USD per prompt and model at the prices in force.

        Args:
            cost: (n, m) cost predicted at training prices, or None for the mean training cost.
            n: number of prompts.

        Returns:
            (n, m) non-negative costs (0 where nothing is known about a model's cost).
        """
        base = np.nan_to_num(self.mean_cost, nan=0.0)
        out = np.broadcast_to(base, (n, len(self.models))).copy() if cost is None else np.asarray(cost, dtype=np.float64).copy()
        scale, replace = self.reprice()
        out *= scale
        fixed = ~np.isnan(replace)
        if fixed.any():
            out[:, fixed] = replace[fixed]
        return np.maximum(out, 0.0)

    # -- persistence -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        nan_none = lambda a: [None if np.isnan(x) else float(x) for x in a]  # noqa: E731
        return {
            "mean_cost": nan_none(self.mean_cost),
            "mean_input_tokens": nan_none(self.mean_input_tokens),
            "mean_output_tokens": nan_none(self.mean_output_tokens),
            "prices": self.prices,
        }

    @classmethod
    def from_dict(cls, models: list[str], data, where: str = "cost_model") -> CostModel:
        """Rebuild from :meth:`to_dict`; errors name ``where`` and the field."""
        if not isinstance(data, dict):
            raise PriceError(f"{where}: expected an object, got {type(data).__name__}")

        def arr(name: str) -> np.ndarray:
            values = data.get(name)
            if values is None:
                return np.full(len(models), np.nan)
            if not isinstance(values, list) or any(v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))) for v in values):
                raise PriceError(f"{where}.{name}: expected a list of numbers, got {values!r}")
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

        prices = data.get("prices") or {}
        if not isinstance(prices, dict):
            raise PriceError(f"{where}.prices: expected an object, got {prices!r}")
        clean = {m: dict(zip(("input", "output"), _price_pair(p, m, f"{where}.prices"), strict=True)) for m, p in prices.items()}
        try:
            return cls(list(models), arr("mean_cost"), arr("mean_input_tokens"), arr("mean_output_tokens"), clean)
        except PriceError as exc:
            raise PriceError(f"{where}: {exc}") from None

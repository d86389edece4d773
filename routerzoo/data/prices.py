"""Per-token list prices, used to turn token counts into USD costs.

A price file is YAML or JSON mapping each model name to its prices in USD per million tokens::

    # prices.yaml
    gpt-4-1106-preview: {input: 10.0, output: 30.0, source: OpenAI pricing page, as_of: 2024-06-01}
    mistralai/Mixtral-8x7B-Instruct-v0.1: {input: 0.7, output: 0.7}

``source`` and ``as_of`` are optional and end up in the dataset manifest. RouterArena's
``model_cost/cost.json`` key names (``input_token_price_per_million``,
``output_token_price_per_million``) are accepted too, and the mapping may sit under a top-level
``models:`` or ``prices:`` key.

:class:`PriceTable` resolves a model's price in this order:

1. the price files it was given, first file first (an explicit ``--prices FILE`` comes before any
   default file an importer adds, such as the bundled MMLU-Pro list);
2. the ``genai-prices`` package (offline snapshot of provider price lists), trying the name as
   given, without an organisation prefix (``mistralai/``), lower-cased, and with ``_`` read as ``.``;
3. otherwise :class:`~routerzoo.errors.UserError` naming the model and asking for ``--prices FILE``.

Names in price files match exactly first, then case-insensitively and ignoring an organisation
prefix on either side. Every price a table hands out is remembered in :meth:`PriceTable.used`, the
``prices`` block of the dataset manifest (model -> ``{input, output, source}``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from routerzoo.errors import DataError, UserError

PER_MILLION = 1_000_000.0
_INPUT_KEYS = ("input", "input_token_price_per_million")
_OUTPUT_KEYS = ("output", "output_token_price_per_million")
_META_KEYS = ("source", "as_of", "note", "notes")


@dataclass(frozen=True)
class Price:
    """List price of one model.

    Attributes:
        input: USD per 1M input (prompt) tokens.
        output: USD per 1M output (completion) tokens.
        source: where the numbers come from, in words.
    """

    input: float
    output: float
    source: str

    def cost(self, input_tokens, output_tokens):
        """USD for the given token counts (scalars or arrays)."""
        return (np.asarray(input_tokens, dtype=np.float64) * self.input
                + np.asarray(output_tokens, dtype=np.float64) * self.output) / PER_MILLION

    def to_dict(self) -> dict:
        return {"input": self.input, "output": self.output, "source": self.source}


def bundled_price_file(name: str):
    """A price file shipped in ``routerzoo/resources/prices`` (an importlib.resources Traversable)."""
    return resources.files("routerzoo").joinpath("resources", "prices", name)


def _norm(name: str) -> str:
    return name.strip().lower()


def _strip_org(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _number(value, file: str, row: int, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(str(value).strip().lstrip("$"))
        except (TypeError, ValueError):
            raise DataError(f"price must be a number (USD per 1M tokens), got {value!r}", file=file, row=row, field=field) from None
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise DataError(f"price must be a non-negative number (USD per 1M tokens), got {value!r}", file=file, row=row, field=field)
    return value


def load_price_file(path, label: str | None = None) -> dict[str, Price]:
    """Read a YAML / JSON price file into ``{model: Price}``.

    Args:
        path: a filesystem path or an importlib.resources Traversable.
        label: how the file is named in sources and errors (defaults to the path).

    Raises:
        UserError: the file does not exist.
        DataError: the file is not valid YAML / JSON or an entry lacks a price.
    """
    label = label or str(path)
    try:
        text = path.read_text(encoding="utf-8") if hasattr(path, "read_text") else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"price file {label} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read price file: {exc}", file=label) from None
    if not text.strip():
        raise DataError("price file is empty", file=label)
    name = str(getattr(path, "name", path)).lower()
    try:
        if name.endswith(".json"):
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", file=label, row=exc.lineno) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        row = mark.line + 1 if mark is not None else None
        raise DataError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}", file=label, row=row) from None
    if isinstance(data, dict):
        for key in ("models", "prices"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not data:
        raise DataError("a price file must map model names to {input: ..., output: ...} (USD per 1M tokens)", file=label)
    out: dict[str, Price] = {}
    for row, (model, entry) in enumerate(data.items(), start=1):
        model = str(model)
        if not isinstance(entry, dict):
            raise DataError(f"entry for model {model!r} must be a mapping with input and output prices, got {entry!r}",
                            file=label, row=row, field=model)
        prices = []
        for keys in (_INPUT_KEYS, _OUTPUT_KEYS):
            key = next((k for k in keys if k in entry), None)
            if key is None:
                raise DataError(f"entry for model {model!r} lacks {keys[0]!r} (USD per 1M tokens)", file=label, row=row, field=f"{model}.{keys[0]}")
            prices.append(_number(entry[key], label, row, f"{model}.{key}"))
        unknown = [k for k in entry if k not in _INPUT_KEYS + _OUTPUT_KEYS + _META_KEYS]
        if unknown:
            raise DataError(f"entry for model {model!r} has unknown key(s) {unknown}; expected input, output, source, as_of",
                            file=label, row=row, field=f"{model}.{unknown[0]}")
        source = f"price file {label}"
        detail = "; ".join(str(entry[k]) for k in ("source",) if entry.get(k))
        if entry.get("as_of"):
            detail = f"{detail}, as of {entry['as_of']}" if detail else f"as of {entry['as_of']}"
        if detail:
            source += f" ({detail})"
        out[model] = Price(prices[0], prices[1], source)
    return out


def _genai_candidates(model: str) -> list[str]:
    names = [model, _strip_org(model)]
    names += [n.replace("_", ".") for n in names]
    names += [n.lower() for n in names]
    return list(dict.fromkeys(n for n in names if n))


def genai_price(model: str) -> Price | None:
    """The price ``genai-prices`` knows for ``model`` (per 1M tokens, lowest tier), or None."""
    try:
        import genai_prices
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    version = getattr(genai_prices, "__version__", "?")
    for ref in _genai_candidates(model):
        try:
            # 1,000 tokens each way: stays in the lowest tier of tiered (long-context) prices
            calc = genai_prices.calc_price(genai_prices.Usage(input_tokens=1000, output_tokens=1000), model_ref=ref)
        except Exception:  # LookupError for unknown names; anything else is treated the same
            continue
        return Price(
            float(calc.input_price * 1000),
            float(calc.output_price * 1000),
            f"genai-prices {version}: {calc.provider.id}/{calc.model.id}",
        )
    return None


class PriceTable:
    """Prices for models, from price files and then ``genai-prices``.

    Args:
        files: price files, highest priority first (paths or importlib.resources Traversables).
            ``None`` entries are skipped, so ``PriceTable([user_file, default_file])`` works when the
            user gave none.
        use_genai_prices: fall back to the ``genai-prices`` snapshot for models in no file.
        extra: further ``{model: Price}`` entries consulted after the files (e.g. a price list
            found next to the data).
    """

    def __init__(self, files: Iterable | str | os.PathLike | None = None, *, use_genai_prices: bool = True,
                 extra: dict[str, Price] | None = None):
        if files is None:
            files = []
        elif isinstance(files, (str, os.PathLike)) or hasattr(files, "read_text"):
            files = [files]
        self.files: list[str] = []
        self._layers: list[dict[str, Price]] = []
        for f in files:
            if f is None:
                continue
            label = _label(f)
            self.files.append(label)
            self._layers.append(load_price_file(f, label))
        if extra:
            self._layers.append(dict(extra))
        self.use_genai_prices = use_genai_prices
        self._cache: dict[str, Price | None] = {}
        self._used: dict[str, Price] = {}

    def _from_layers(self, model: str) -> Price | None:
        for layer in self._layers:
            if model in layer:
                return layer[model]
            want = _norm(model)
            for key, price in layer.items():
                if _norm(key) == want:
                    return price
            want = _norm(_strip_org(model))
            for key, price in layer.items():
                if _norm(_strip_org(key)) == want:
                    return price
        return None

    def find(self, model: str, *, record: bool = True) -> Price | None:
        """The price of ``model`` or None; ``record`` adds it to :meth:`used`."""
        if model not in self._cache:
            price = self._from_layers(model)
            if price is None and self.use_genai_prices:
                price = genai_price(model)
            self._cache[model] = price
        price = self._cache[model]
        if price is not None and record:
            self._used[model] = price
        return price

    def __contains__(self, model: str) -> bool:
        return self.find(model, record=False) is not None

    def get(self, model: str) -> Price:
        """The price of ``model``.

        Raises:
            UserError: no price file lists the model and genai-prices does not know it.
        """
        price = self.find(model)
        if price is None:
            where = f"price file(s) {', '.join(self.files)}" if self.files else "no price file was given"
            raise UserError(
                f"no price known for model {model!r} ({where}; genai-prices does not know it either), so its cost "
                f"cannot be computed from token counts. Pass --prices FILE, a YAML or JSON file with an entry like "
                f"'{model}: {{input: <USD per 1M input tokens>, output: <USD per 1M output tokens>}}'"
            )
        return price

    def cost(self, model: str, input_tokens, output_tokens):
        """USD cost of ``model`` for the token counts (float for scalars, array for arrays)."""
        value = self.get(model).cost(input_tokens, output_tokens)
        return float(value) if np.ndim(value) == 0 else value

    def record(self, model: str, price: Price) -> None:
        """Note a price used from elsewhere (e.g. per-record costs) in :meth:`used`."""
        self._used[model] = price

    def used(self) -> dict[str, dict]:
        """Prices handed out so far: ``{model: {input, output, source}}`` for the manifest."""
        return {m: p.to_dict() for m, p in self._used.items()}


def _label(f) -> str:
    if isinstance(f, (str, os.PathLike)):
        return str(f)
    # importlib.resources Traversable inside the package: name it relative to the package
    text = str(f)
    marker = os.sep + "routerzoo" + os.sep
    return "routerzoo/" + text.split(marker, 1)[1].replace(os.sep, "/") if marker in text else text


def reprice_outcomes(matrix, prices: dict, where: str = "--prices"):
    """The outcome table at new prices: each named model's cost recomputed from its token counts.

    ``routerzoo eval --prices`` makes the router decide at new prices; scoring those decisions
    against the old costs would leave the best single model, the zero router and the oracle where
    they were, and answer "what if the big model got 50% cheaper" wrongly. So the truth is repriced
    too: cost = input_tokens · input price + output_tokens · output price, per prompt.

    Args:
        matrix: an :class:`~routerzoo.data.matrix.OutcomeMatrix` (its rows are the prompts scored).
        prices: model → :class:`Price` or ``{"input", "output"}`` (USD per 1M tokens); models of the
            matrix not named keep their costs.
        where: the flag or file named in errors.

    Returns:
        A copy of ``matrix`` with new costs in the named models' columns.

    Raises:
        UserError: a named model has no token counts for some prompt of ``matrix`` (one line).
    """
    cost = np.array(matrix.cost, dtype=np.float64, copy=True)
    for model, entry in prices.items():
        if model not in matrix.models:
            continue
        price = entry if isinstance(entry, Price) else Price(float(entry["input"]), float(entry["output"]), where)
        j = matrix.models.index(model)
        tin = None if matrix.input_tokens is None else np.asarray(matrix.input_tokens[:, j], dtype=np.float64)
        tout = None if matrix.output_tokens is None else np.asarray(matrix.output_tokens[:, j], dtype=np.float64)
        missing = len(matrix) if tin is None or tout is None else int((np.isnan(tin) | np.isnan(tout)).sum())
        if missing:
            raise UserError(f"{where}: cannot reprice the outcomes of {model!r}: {missing} of {len(matrix)} prompts have no "
                            "input/output token counts in the dataset, so their cost at the new price is unknown")
        cost[:, j] = price.cost(tin, tout)
    return replace(matrix, cost=cost)

"""Typed configs to and from JSON, checked field by field.

Every router, scorer and policy kind declares its hyper-parameters as a dataclass with a docstring
per field. The artifact stores ``asdict(config)``; loading rebuilds the dataclass through
:func:`config_from_dict`, which refuses unknown fields and values of the wrong type (``"k": "abc"``,
``"models": "abc"``) with one message naming the field, then runs the dataclass's own
``__post_init__`` validation. Defaults exist once: in the dataclass.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Union

from routerzoo.errors import UserError


class ConfigFieldError(UserError):
    """A config value of the wrong type or out of range; the message names the field."""


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check(value, tp, where: str):
    """``value`` converted to ``tp`` (int → float allowed), or ConfigFieldError."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, where)
            except ConfigFieldError as exc:
                errors.append(str(exc))
        # X | None where X is a dataclass: X's own message names the field that is wrong inside it
        inner = f" ({errors[0]})" if len(errors) == 1 and dataclasses.is_dataclass(args[0]) else ""
        raise ConfigFieldError(f"{where}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}{inner}")
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ConfigFieldError(f"{where}: expected a list, got {value!r}")
        return [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_t, val_t = typing.get_args(tp) or (Any, Any)
        if not isinstance(value, dict):
            raise ConfigFieldError(f"{where}: expected an object, got {value!r}")
        return {_check(k, key_t, f"{where} key"): _check(v, val_t, f"{where}[{k!r}]") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigFieldError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigFieldError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigFieldError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigFieldError(f"{where}: expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return config_from_dict(tp, value, where)
    return value


def config_from_dict(cls: type, data, where: str = "config"):
    """Build dataclass ``cls`` from a JSON object, checking names and types.

    Args:
        cls: a dataclass type.
        data: the decoded JSON object.
        where: how to name the object in errors (e.g. ``"routers/knn/config.json: config"``).

    Raises:
        ConfigFieldError: an unknown field, a missing required one, a wrong type, or the
            dataclass's own validation failing; the message names the field.
    """
    if not isinstance(data, dict):
        raise ConfigFieldError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigFieldError(f"{where}: unknown field(s) {unknown}; {cls.__name__} has {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigFieldError(f"{where}: missing field '{name}'")
            continue
        kwargs[name] = _check(data[name], hints[name], f"{where}.{name}")
    try:
        return cls(**kwargs)
    except UserError as exc:
        raise ConfigFieldError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigFieldError(f"{where}: {exc}") from None


def config_to_dict(config) -> dict:
    """``asdict`` for a config dataclass (JSON-able by construction)."""
    return dataclasses.asdict(config)

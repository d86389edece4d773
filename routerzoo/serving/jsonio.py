"""JSON in and out of the server, safe against hostile input.

Python's ``json`` is lenient where the wire format is not: it reads ``NaN`` / ``Infinity`` and
overflowing numbers (``1e999`` becomes ``inf``), lone UTF-16 surrogates (``"\\ud800"`` decodes to a
``str`` that cannot be encoded as UTF-8), and nests until the interpreter's recursion limit. Each of
those used to surface later, in the encoder or when the body was re-encoded for a backend, as an
error that failed other requests or a 500. Here they are refused where the body is read, naming
the field, and what the server writes is always valid JSON.
"""

from __future__ import annotations

import json
import math
import re

#: deepest nesting accepted in a request body (OpenAI bodies nest a handful of levels; tool
#: schemas a few dozen)
MAX_DEPTH = 128

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class BadJSON(ValueError):
    """A body that is not acceptable JSON; ``param`` names the field when one is to blame."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _too_deep(obj, limit: int) -> bool:
    """Whether decoded JSON nests deeper than ``limit``, walked without recursion."""
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            continue
        if depth > limit:
            return True
        stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))
    return False


def _brackets(raw: bytes | str) -> int:
    return raw.count(b"[" if isinstance(raw, bytes) else "[") + raw.count(b"{" if isinstance(raw, bytes) else "{")


def _surrogate_path(obj) -> str | None:
    """Dotted path of the first string (key or value) holding a lone surrogate, iteratively."""
    stack = [(obj, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return path or "(body)"
        elif isinstance(node, dict):
            for k, v in node.items():
                sub = f"{path}.{k}" if path else str(k)
                try:
                    k.encode("utf-8")
                except UnicodeEncodeError:
                    return path or "(body)"
                stack.append((v, sub))
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node))
    return None


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH):
    """Decode a request body strictly.

    Raises:
        BadJSON: not UTF-8 / not JSON, ``NaN`` / ``Infinity`` / out-of-range numbers, nesting
            deeper than ``max_depth``, or a lone surrogate escape (``param`` names its field).
    """
    try:
        obj = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:  # the C decoder stops at the interpreter's recursion limit
        raise BadJSON(f"the request body nests deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadJSON(f"the request body is not valid JSON: {str(exc)[:200]}") from None
    # counting brackets (C speed) spares ordinary bodies the walk
    if _brackets(raw) > max_depth and _too_deep(obj, max_depth):
        raise BadJSON(f"the request body nests deeper than {max_depth} levels")
    if isinstance(raw, str) or _SURROGATE_ESCAPE.search(raw):  # only an escape can carry one
        path = _surrogate_path(obj)
        if path is not None:
            raise BadJSON(f"{path} holds a lone UTF-16 surrogate (not valid Unicode text)", param=path)
    return obj


def loads_answer(raw: bytes):
    """Decode a backend's answer: like :func:`json.loads` but non-finite numbers and deep nesting
    are errors (``ValueError``), so whatever the server relays can be written back as JSON."""
    try:
        return json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:  # what is decoded can be encoded again: both stop at the same limit
        raise ValueError("nests too deep") from None


def dumps(obj) -> bytes:
    """Compact UTF-8 JSON; never ``NaN`` (ValueError), and lone surrogates (only possible in text a
    backend sent) escaped rather than failing the answer."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")

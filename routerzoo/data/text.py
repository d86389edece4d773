"""Text normalisation shared by splits (same question, same split) and the oracle (lookup by text).

Standard library only, so inference code can use it without pandas.
"""

from __future__ import annotations

import re

_SPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Lower-case, collapse whitespace, strip: the key under which two prompts are "the same"."""
    return _SPACE.sub(" ", text).strip().lower()

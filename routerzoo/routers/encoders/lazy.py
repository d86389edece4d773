"""One lazy prompt encoder for everything that embeds text at predict time.

Routers, deferral scorers, sequential policies and the deferral fit context all hold an encoder id
and build the :class:`~routerzoo.routers.encoders.encoder.Encoder` only on the first ``embed`` call, so that
constructing or loading them does no I/O. :class:`LazyEncoding` is that one implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np


class LazyEncoding:
    """Mixin: ``embed(texts)`` through an Encoder built on first use and kept in ``self._encoder``.

    A class says which encoder with :meth:`_encoder_id` (default ``self.config.encoder``) and how it
    caches with ``_encoder_options`` (default: memory only, so a served artifact writes no files).
    """

    _encoder: Any = None
    _encoder_options: ClassVar[dict[str, Any]] = {"cache_dir": ""}

    def _encoder_id(self) -> str:
        return self.config.encoder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, d) embeddings of ``texts`` (the encoder is loaded on the first call)."""
        if self._encoder is None:
            from routerzoo.routers.encoders.encoder import Encoder

            self._encoder = Encoder(self._encoder_id(), show_progress=False, **self._encoder_options)
        return self._encoder.encode(texts)

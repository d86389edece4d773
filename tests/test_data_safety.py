"""Never lose data, verify what is loaded: atomic dataset writes, locks, and manifest / table checks."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import topic_outcomes

from routerzoo.cli import main
from routerzoo.data import dataset as dsmod
from routerzoo.data import fsutil
from routerzoo.data.dataset import load_dataset, make_dataset, resplit, save_dataset
from routerzoo.data.importers import import_files
from routerzoo.data.splits import SplitSpec
from routerzoo.errors import DataError, UserError


@pytest.fixture
def saved(tmp_path):
    ds = make_dataset(topic_outcomes(10), name="old")
    out = save_dataset(ds, tmp_path / "d")
    return out, ds.manifest["sha256"]


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def _intact(out: Path, sha: str) -> None:
    back = load_dataset(out, verify="full")
    assert back.manifest["sha256"] == sha and back.name == "old"
    assert _leftovers(out.parent) == []


# ---------------------------------------------------------------------------------------------
# atomic writes


def test_save_refuses_non_empty_directory_without_overwrite(saved, tmp_path):
    out, sha = saved
    new = make_dataset(topic_outcomes(5, seed=3), name="new")
    with pytest.raises(UserError, match="already exists and is not empty.*overwrite"):
        save_dataset(new, out)
    _intact(out, sha)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("precious")
    with pytest.raises(UserError, match="not empty"):
        save_dataset(new, other)
    assert (other / "mine.txt").read_text() == "precious"
    (tmp_path / "empty").mkdir()
    save_dataset(new, tmp_path / "empty")  # an empty directory is fine
    save_dataset(new, out, overwrite=True)
    assert load_dataset(out).name == "new" and _leftovers(tmp_path) == []


def test_save_to_a_file_is_a_one_line_error(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("keep")
    with pytest.raises(UserError, match="is a file"):
        save_dataset(make_dataset(topic_outcomes(3), name="n"), f, overwrite=True)
    assert f.read_text() == "keep"


class Boom(RuntimeError):
    pass


def _boom(*args, **kwargs):
    raise Boom("injected failure")


@pytest.mark.parametrize("step", ["to_parquet", "table_write", "manifest_write", "rename", "exchange"])
def test_failure_at_each_step_leaves_the_old_dataset(saved, monkeypatch, step):
    out, sha = saved
    new = make_dataset(topic_outcomes(7, seed=5), name="new")
    if step == "to_parquet":
        monkeypatch.setattr(pd.DataFrame, "to_parquet", _boom)
    elif step in ("table_write", "manifest_write"):
        real = dsmod._write_file
        target = dsmod.OUTCOMES_FILE if step == "table_write" else dsmod.MANIFEST

        def write(path, data):
            if path.name == target:
                path.write_bytes(data[: len(data) // 2])  # a half-written file, then the crash
                raise Boom("injected failure")
            real(path, data)

        monkeypatch.setattr(dsmod, "_write_file", write)
    elif step == "rename":
        monkeypatch.setattr(fsutil, "_exchange", lambda a, b: False)  # the two-rename path
        real_rename = os.rename

        def rename(src, dst):
            if Path(src).name.startswith(".d.tmp-"):
                raise Boom("injected failure")
            real_rename(src, dst)

        monkeypatch.setattr(fsutil.os, "rename", rename)
    else:
        monkeypatch.setattr(fsutil, "_exchange", _boom)
    with pytest.raises(Boom):
        save_dataset(new, out, overwrite=True)
    monkeypatch.undo()
    _intact(out, sha)


def test_two_rename_fallback_replaces(saved, monkeypatch):
    out, _ = saved
    monkeypatch.setattr(fsutil, "_exchange", lambda a, b: False)
    save_dataset(make_dataset(topic_outcomes(4, seed=2), name="new"), out, overwrite=True)
    assert load_dataset(out).name == "new" and _leftovers(out.parent) == []


def test_concurrent_writer_gets_a_clear_error(saved):
    out, sha = saved
    with fsutil.exclusive_lock(out):
        with pytest.raises(UserError, match=r"being written by another routerzoo process.*\.d\.lock"):
            save_dataset(make_dataset(topic_outcomes(3), name="new"), out, overwrite=True)
    _intact(out, sha)
    save_dataset(make_dataset(topic_outcomes(3), name="new"), out, overwrite=True)  # released


def test_atomic_directory_general_api(tmp_path):
    target = tmp_path / "artifact"
    with fsutil.atomic_directory(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target and not target.exists()
        (tmp / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1"
    with pytest.raises(ValueError), fsutil.atomic_directory(target, overwrite=True) as tmp:
        (tmp / "a.txt").write_text("2")
        raise ValueError("fail mid-way")
    assert (target / "a.txt").read_text() == "1" and _leftovers(tmp_path) == []
    with fsutil.atomic_directory(target, overwrite=True, what="router artifact") as tmp:
        (tmp / "b.txt").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    with pytest.raises(UserError, match="router artifact .* not empty"), fsutil.atomic_directory(target, what="router artifact"):
        pass


def test_resplit_in_place_keeps_rejects_and_is_atomic(tmp_path, monkeypatch):
    src = tmp_path / "a.csv"
    df = topic_outcomes(5)
    df.loc[3, "quality"] = 7
    df.to_csv(src, index=False)
    out = tmp_path / "d"
    assert main(["data", "import", str(src), "--format", "long", "--out", str(out), "--on-invalid", "skip"]) == 0
    rejects = pd.read_csv(out / "rejects.csv")
    assert rejects.to_dict("records") == [{"file": str(src), "row": 4, "field": "quality",
                                           "reason": "quality 7.0 is outside [0, 1]"}]
    before = load_dataset(out).manifest["content_sha256"]
    monkeypatch.setattr(pd.DataFrame, "to_parquet", _boom)
    with pytest.raises(Boom):
        main(["data", "split", str(out), "--test", "0.5"])
    monkeypatch.undo()
    assert load_dataset(out).manifest["split"]["test"] == 0.2
    assert main(["data", "split", str(out), "--test", "0.5"]) == 0
    again = load_dataset(out)
    assert again.manifest["split"]["test"] == 0.5 and again.manifest["content_sha256"] == before
    assert (out / "rejects.csv").is_file()


def test_cli_import_refuses_existing_out_before_work(tmp_path, capsys, monkeypatch):
    src = tmp_path / "a.csv"
    topic_outcomes(3).to_csv(src, index=False)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "thesis.tex").write_text("do not lose")
    import routerzoo.data.importers as importers

    monkeypatch.setattr(importers, "import_files", _boom)  # never reached
    assert main(["data", "import", str(src), "--format", "long", "--out", str(tmp_path / "taken")]) == 2
    assert main(["data", "import", str(src), "--format", "long", "--out", str(src)]) == 2
    err = capsys.readouterr().err
    assert "already exists and is not empty; pass --overwrite" in err and "is a file" in err
    assert len(err.strip().splitlines()) == 2 and "Traceback" not in err
    monkeypatch.undo()
    assert main(["data", "import", str(src), "--format", "long", "--out", str(tmp_path / "taken"), "--overwrite"]) == 0
    assert not (tmp_path / "taken" / "thesis.tex").exists() and load_dataset(tmp_path / "taken").outcomes is not None


# ---------------------------------------------------------------------------------------------
# verified loading


def _edit_manifest(out: Path, fn) -> None:
    m = json.loads((out / "dataset.json").read_text())
    m = fn(m)
    (out / "dataset.json").write_text(json.dumps(m))


@pytest.mark.parametrize("edit,message", [
    (lambda m: [m], "expected a JSON object, got list"),
    (lambda m: dict(m, schema_version="1"), "schema_version must be an integer, got '1'"),
    (lambda m: dict(m, schema_version=True), "schema_version must be an integer"),
    (lambda m: dict(m, schema_version=0), "schema_version must be >= 1"),
    (lambda m: dict(m, schema_version=99), "schema version 99"),
    (lambda m: dict(m, tables="outcomes"), "tables must be a non-empty list"),
    (lambda m: dict(m, tables=["outcomes", "answers"]), "each of"),
    (lambda m: dict(m, models=[1, 2]), "models must be a list of distinct non-empty strings"),
    (lambda m: {k: v for k, v in m.items() if k != "models"}, "models must be a list"),
    (lambda m: dict(m, sha256="abc"), "sha256 must be 64 hex digits"),
    (lambda m: dict(m, notes="hello"), "notes must be a JSON list"),
    (lambda m: dict(m, counts=[]), "counts must be a JSON object"),
    (lambda m: dict(m, models=m["models"][:2]), "manifest's models do not match the tables"),
    (lambda m: dict(m, models=m["models"] + ["ghost"]), "only in the manifest: ['ghost']"),
    (lambda m: dict(m, sha256="0" * 64), "was modified"),
    (lambda m: dict(m, tables=["outcomes", "preferences"]), "table listed in the manifest is missing"),
])
def test_bad_manifest_is_a_one_line_error(saved, edit, message, capsys):
    out, _ = saved
    _edit_manifest(out, edit)
    with pytest.raises(UserError) as e:
        load_dataset(out)
    assert message in str(e.value)
    assert main(["data", "show", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("routerzoo: error: ") and len(err.strip().splitlines()) == 1 and message in err


def _rewrite_table(out: Path, fn) -> None:
    df = pd.read_parquet(out / "outcomes.parquet")
    fn(df).to_parquet(out / "outcomes.parquet", index=False)


@pytest.mark.parametrize("edit,message,field", [
    (lambda df: df.assign(quality=df["quality"].where(df.index != 3, 1.5)), "quality must be a number in [0, 1]", "quality"),
    (lambda df: df.assign(quality=df["quality"].where(df.index != 3, np.nan)), "quality must be a number in [0, 1]", "quality"),
    (lambda df: df.assign(cost=df["cost"].where(df.index != 2, np.inf)), "cost must be a finite number >= 0", "cost"),
    (lambda df: df.assign(cost=df["cost"].where(df.index != 2, -1.0)), "cost must be a finite number >= 0", "cost"),
    (lambda df: df.assign(cost=df["cost"].astype(str)), "expected numbers", "cost"),
    (lambda df: df.assign(split=df["split"].where(df.index != 1, "dev")), "split must be one of", "split"),
    (lambda df: df.drop(columns=["model"]), "lacks required column(s) ['model']", None),
    (lambda df: df.assign(prompt=df["prompt"].where(df.index != 1, None)), "missing value", "prompt"),
    (lambda df: pd.concat([df, df.iloc[[0]]]), "duplicate (prompt_id, model)", "prompt_id"),
    (lambda df: df.assign(quality=1.0 - df["quality"]), "was modified", None),  # valid but not what was saved
    (lambda df: df.iloc[:-1], "was modified", None),
])
def test_tampered_table_is_named(saved, edit, message, field):
    out, _ = saved
    _rewrite_table(out, edit)
    with pytest.raises(DataError) as e:
        load_dataset(out)
    assert message in str(e.value)
    assert "outcomes.parquet" in str(e.value)
    if field:
        assert e.value.field == field


def test_unlisted_table_and_truncated_parquet(saved, tmp_path):
    out, sha = saved
    shutil.copy(out / "outcomes.parquet", out / "preferences.parquet")
    with pytest.raises(DataError, match="preferences.parquet is present but the manifest does not list it"):
        load_dataset(out)
    (out / "preferences.parquet").unlink()
    blob = (out / "outcomes.parquet").read_bytes()
    (out / "outcomes.parquet").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="cannot read table"):
        load_dataset(out)


def test_verified_without_file_hashes_and_rewritten_same_content(saved):
    out, sha = saved
    # an older manifest without per-file hashes: the content fingerprint is recomputed
    _edit_manifest(out, lambda m: {k: v for k, v in m.items() if k != "files"})
    assert load_dataset(out).manifest["sha256"] == sha
    # the same content re-encoded (different bytes) still verifies
    _rewrite_table(out, lambda df: df.sample(frac=1.0, random_state=1))
    assert load_dataset(out).manifest["sha256"] == sha
    _rewrite_table(out, lambda df: df.assign(cost=df["cost"] * 2))
    with pytest.raises(DataError, match="was modified"):
        load_dataset(out)
    assert load_dataset(out, verify=False).manifest["sha256"] == sha  # explicit opt-out


def test_save_refuses_tables_changed_after_make(tmp_path):
    ds = make_dataset(topic_outcomes(3), name="n")
    ds.outcomes.loc[0, "quality"] = 1 - ds.outcomes.loc[0, "quality"]
    with pytest.raises(UserError, match="changed after its manifest was made"):
        save_dataset(ds, tmp_path / "d")
    again = resplit(make_dataset(topic_outcomes(3), name="n"), SplitSpec(test=0.5))
    save_dataset(again, tmp_path / "d")
    assert load_dataset(tmp_path / "d").manifest["split"]["test"] == 0.5


# ---------------------------------------------------------------------------------------------
# import rules that are not format specific


def test_single_model_dataset_has_a_note(tmp_path):
    f = tmp_path / "one.csv"
    df = topic_outcomes(3)
    df[df["model"] == "big"].to_csv(f, index=False)
    ds = import_files([f], "long")
    assert any("only one model (big): there is nothing for a router to choose between" in n for n in ds.manifest["notes"])


def test_mixed_type_optional_text_is_saved(tmp_path):
    f = tmp_path / "a.jsonl"
    rows = [{"prompt": "a", "model": "m", "quality": 1, "cost": 0, "category": 3, "response": "x"},
            {"prompt": "b", "model": "m", "quality": 0, "cost": 0, "category": "math", "response": 12}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = import_files([f], "long")
    save_dataset(ds, tmp_path / "d")
    back = load_dataset(tmp_path / "d").outcomes.set_index("prompt")
    assert back.loc["a", "category"] == "3" and back.loc["b", "response"] == "12"
    rows[1]["category"] = {"nested": 1}
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError, match="must be text") as e:
        import_files([f], "long")
    assert (e.value.row, e.value.field) == (2, "category")


def test_on_invalid_skip_lists_rejects_and_never_skips_broken_files(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("prompt,model,quality,cost\nhi,m,1,0\nho,m,1.5,0\nhu,m,x,0\nha,,1,0\nhe,m,0,0.1\n")
    ds = import_files([f], "long", on_invalid="skip")
    assert sorted(ds.outcomes["prompt"]) == ["he", "hi"]
    assert [(r["row"], r["field"]) for r in ds.rejects] == [(2, "quality"), (3, "quality"), (4, "model")]
    assert any("skipped 3 invalid record(s)" in n for n in ds.manifest["notes"])
    with pytest.raises(DataError, match="row 4, field 'model': model is missing"):
        import_files([f], "long")
    f.write_text("prompt,model,quality,cost\nhi,m,1,0\nho,m,1")
    with pytest.raises(DataError, match="cut short"):
        import_files([f], "long", on_invalid="skip")
    with pytest.raises(UserError, match="on_invalid"):
        import_files([f], "long", on_invalid="maybe")

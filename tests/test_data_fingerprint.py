"""The dataset fingerprint covers the split, and the manifest's counts and split spec are checked
against the tables (issue 18): relabelling test prompts as train, or editing the stated split or
counts, is refused in one line; datasets written before (fingerprint version 1) still load, upgraded
in memory with a note; ``routerzoo data split`` repairs an edited split."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from cascade_data import cascade_table
from conftest import cli_refused, topic_outcomes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routerzoo.cli import main
from routerzoo.data.dataset import content_fingerprint, load_dataset, make_dataset, save_dataset
from routerzoo.data.splits import SplitSpec
from routerzoo.errors import DataError


@pytest.fixture
def saved(tmp_path) -> Path:
    return save_dataset(make_dataset(topic_outcomes(10), name="t", split=SplitSpec(val=0.2, test=0.3)), tmp_path / "d")


def _edit_manifest(out: Path, fn) -> None:
    (out / "dataset.json").write_text(json.dumps(fn(json.loads((out / "dataset.json").read_text()))))


def _relabel_test_as_train(out: Path) -> str:
    df = pd.read_parquet(out / "outcomes.parquet")
    pid = df.loc[df["split"] == "test", "prompt_id"].iloc[0]
    df.loc[df["prompt_id"] == pid, "split"] = "train"
    df.to_parquet(out / "outcomes.parquet", index=False)
    return pid


def test_relabelled_split_is_refused_naming_a_prompt_and_repaired_by_resplitting(saved, capsys):
    before = load_dataset(saved).manifest
    pid = _relabel_test_as_train(saved)
    with pytest.raises(DataError, match="another split than the manifest's split spec") as err:
        load_dataset(saved)
    assert repr(pid) in str(err.value) and "train in the table, test by the spec" in str(err.value)
    cli_refused(capsys, ["data", "show", saved], "routerzoo data split")
    cli_refused(capsys, ["train", "--router", "knn", "--data", saved, "--out", saved.parent / "r",
                                 "--tracking.enabled", "false"], "another split")
    assert not (saved.parent / "r").exists()
    # re-splitting checks the content only and writes the split the spec gives
    assert main(["data", "split", str(saved), "--val", "0.2", "--test", "0.3"]) == 0
    after = load_dataset(saved).manifest
    assert after["sha256"] == before["sha256"] and after["content_sha256"] == before["content_sha256"]


def test_manifest_split_spec_and_counts_are_checked_against_the_tables(saved):
    sha = load_dataset(saved).manifest["sha256"]
    _edit_manifest(saved, lambda m: dict(m, split=dict(m["split"], test=0.5)))
    with pytest.raises(DataError, match="another split than the manifest's split spec"):
        load_dataset(saved)
    _edit_manifest(saved, lambda m: dict(m, split=dict(m["split"], test=0.3)))
    assert load_dataset(saved).manifest["sha256"] == sha
    for edit, message in [
        (lambda m: dict(m, counts=dict(m["counts"], outcomes=m["counts"]["outcomes"] + 1)), "counts.outcomes is"),
        (lambda m: dict(m, counts=dict(m["counts"], prompts=3)), "counts.prompts is 3 but the tables have 20"),
        (lambda m: dict(m, counts=dict(m["counts"], splits={"train": 20, "val": 0, "test": 0})), "counts.splits"),
        (lambda m: dict(m, per_model=dict(m["per_model"], big=dict(m["per_model"]["big"], n=99))), "per_model['big'].n"),
        (lambda m: dict(m, fingerprint_version=3), "fingerprint_version must be 1 or 2"),
        (lambda m: dict(m, content_sha256="x"), "content_sha256 must be 64 hex digits"),
    ]:
        original = (saved / "dataset.json").read_text()
        _edit_manifest(saved, edit)
        with pytest.raises(DataError, match="invalid manifest") as err:
            load_dataset(saved)
        assert message in str(err.value)
        (saved / "dataset.json").write_text(original)
    assert load_dataset(saved).manifest["sha256"] == sha


@pytest.mark.parametrize("keep_file_hashes", [True, False])
def test_version_1_datasets_load_upgraded_with_a_note(saved, keep_file_hashes):
    current = load_dataset(saved)
    content = current.manifest["content_sha256"]

    def downgrade(m):
        m = {k: v for k, v in m.items() if k not in ("fingerprint_version", "content_sha256")}
        m["sha256"] = content  # what an older routerzoo wrote: the content alone
        if keep_file_hashes:
            m["files"] = {k: dict(v, content_sha256=content) for k, v in m["files"].items()}
        else:
            del m["files"]
        return m

    _edit_manifest(saved, downgrade)
    old = load_dataset(saved)
    assert old.manifest["sha256"] == current.manifest["sha256"] and old.manifest["fingerprint_version"] == 2
    assert any("fingerprint upgraded to cover the split" in n for n in old.manifest["notes"])
    assert content_fingerprint(old.outcomes, old.preferences) == content
    # saved again (e.g. re-split in place), it is written as version 2
    save_dataset(old, saved, overwrite=True)
    assert json.loads((saved / "dataset.json").read_text())["fingerprint_version"] == 2
    assert load_dataset(saved, verify="full").manifest["sha256"] == current.manifest["sha256"]
    # a version-1 dataset whose split column was edited is refused where its file bytes changed
    _edit_manifest(saved, downgrade)
    _relabel_test_as_train(saved)
    with pytest.raises(DataError, match="another split"):
        load_dataset(saved)


def test_token_logprobs_verify_fully_after_a_round_trip(tmp_path):
    """Parquet gives the lists back as arrays; the fingerprint must not change with that."""
    out = save_dataset(make_dataset(cascade_table(20), name="c"), tmp_path / "c")
    sha = json.loads((out / "dataset.json").read_text())["sha256"]
    assert load_dataset(out, verify="full").manifest["sha256"] == sha


_BASE = make_dataset(topic_outcomes(6), name="t", split=SplitSpec(val=0.3, test=0.3))


@settings(max_examples=30, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2**31 - 1), st.sampled_from(["train", "val", "test"]), st.booleans())
def test_any_relabelled_prompt_is_refused_and_row_order_never_matters(seed, new_split, shuffle):
    """Property: moving any one prompt to another split is refused on load; shuffling rows is not."""
    with tempfile.TemporaryDirectory() as tmp:
        out = save_dataset(_BASE, Path(tmp) / "d")
        df = pd.read_parquet(out / "outcomes.parquet")
        pid = df["prompt_id"].unique()[seed % df["prompt_id"].nunique()]
        old = df.loc[df["prompt_id"] == pid, "split"].iloc[0]
        if shuffle:
            df = df.sample(frac=1.0, random_state=seed % 1000)
        df.loc[df["prompt_id"] == pid, "split"] = new_split
        df.to_parquet(out / "outcomes.parquet", index=False)
        if new_split == old:
            assert load_dataset(out).manifest["sha256"] == _BASE.manifest["sha256"]
        else:
            with pytest.raises(DataError):
                load_dataset(out)

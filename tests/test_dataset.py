import json

import numpy as np
import pandas as pd
import pytest
from conftest import topic_outcomes

from routerzoo.data.dataset import load_dataset, make_dataset, resplit, save_dataset
from routerzoo.data.splits import SplitSpec
from routerzoo.errors import DataError, UserError


def test_round_trip_and_manifest(tmp_path):
    ds = make_dataset(topic_outcomes(20), name="t", sources=[{"path": "x.csv"}], prices={"big": {"input": 1, "output": 2}})
    save_dataset(ds, tmp_path / "d")
    back = load_dataset(tmp_path / "d")
    m = back.manifest
    assert m["models"] == ["math-small", "history-small", "big"]
    assert m["counts"]["prompts"] == 40 and m["counts"]["outcomes"] == 120
    assert sum(m["counts"]["splits"].values()) == 40
    assert m["prices"]["big"]["output"] == 2 and len(m["sha256"]) == 64
    assert m["per_model"]["big"]["n"] == 40
    pd.testing.assert_frame_equal(back.outcomes.reset_index(drop=True), ds.outcomes.reset_index(drop=True), check_dtype=False)
    assert json.loads((tmp_path / "d" / "dataset.json").read_text())["name"] == "t"


def test_fingerprint_tracks_content_and_split_not_row_order():
    df = topic_outcomes(20)
    a = make_dataset(df, name="a").manifest
    b = make_dataset(df.sample(frac=1.0, random_state=0), name="b").manifest
    resplit_ = make_dataset(df, name="r", split=SplitSpec(seed=7)).manifest
    changed = df.copy()
    changed.loc[0, "quality"] = 1 - changed.loc[0, "quality"]
    c = make_dataset(changed, name="c").manifest
    assert a["sha256"] == b["sha256"] and a["sha256"] != c["sha256"]
    # the split changes results, so it changes sha256; content_sha256 is the split-independent part
    assert resplit_["sha256"] != a["sha256"] and resplit_["content_sha256"] == a["content_sha256"]
    assert a["fingerprint_version"] == 2


def test_outcome_matrix_missing_models_and_complete():
    df = topic_outcomes(10)
    df = df[~((df["prompt_id"] == "p-math-0") & (df["model"] == "big"))]
    ds = make_dataset(df, name="t")
    mat = ds.outcome_matrix(models=["big", "math-small"])
    assert mat.quality.shape == (20, 2)
    assert np.isnan(mat.quality[mat.prompt_ids.index("p-math-0"), 0])
    assert len(mat.complete()) == 19
    with pytest.raises(UserError, match="no outcomes for model"):
        ds.outcome_matrix(models=["nope"])
    with pytest.raises(UserError, match="unknown split"):
        ds.outcome_matrix(split="dev")


def test_resplit_keeps_content_fingerprint(tmp_path):
    ds = make_dataset(topic_outcomes(20), name="t")
    again = resplit(ds, SplitSpec(val=0.0, test=0.5, seed=3))
    assert again.manifest["content_sha256"] == ds.manifest["content_sha256"]
    assert again.manifest["sha256"] != ds.manifest["sha256"]
    assert again.manifest["counts"]["splits"]["val"] == 0


@pytest.mark.parametrize(
    "mutate,message,field",
    [
        (lambda df: df.assign(quality=df["quality"].where(df.index != 4, 1.7)), r"quality 1.7 is outside \[0, 1\]", "quality"),
        (lambda df: df.assign(cost=df["cost"].where(df.index != 2, -1.0)), "negative", "cost"),
        (lambda df: df.assign(quality=df["quality"].astype(object).where(df.index != 3, "high")), "not a number", "quality"),
        (lambda df: pd.concat([df, df.iloc[[5]]]), "duplicate record", "prompt_id"),
        (lambda df: df.assign(prompt=df["prompt"].where(df.index != 1, "")), "non-empty string", "prompt"),
        (lambda df: df.assign(bogus=1), "unknown column", None),
        (lambda df: df.drop(columns=["cost"]), "required column", None),
        (lambda df: df.iloc[:0], "empty", None),
    ],
)
def test_bad_outcomes_name_row_and_field(mutate, message, field):
    df = topic_outcomes(5).reset_index(drop=True)
    df["_file"] = "in.csv"
    df["_row"] = range(1, len(df) + 1)
    with pytest.raises(DataError, match=message) as err:
        make_dataset(mutate(df), name="bad")
    if field:
        assert err.value.field == field and err.value.file == "in.csv" and err.value.row is not None
        assert f"field '{field}'" in str(err.value) and "in.csv, row" in str(err.value)


def test_bad_preferences():
    prefs = pd.DataFrame({"prompt_id": ["1", "2"], "prompt": ["a", "b"], "model_a": ["x", "x"], "model_b": ["y", "y"], "winner": ["a", "maybe"]})
    prefs["_file"], prefs["_row"] = "p.jsonl", [1, 2]
    with pytest.raises(DataError, match="winner must be one of") as err:
        make_dataset(preferences=prefs, name="p")
    assert err.value.row == 2 and err.value.field == "winner"


def test_preferences_only_dataset(tmp_path):
    prefs = pd.DataFrame({"prompt_id": ["1", "2"], "prompt": ["a", "b"], "model_a": ["x", "x"], "model_b": ["y", "z"], "winner": ["A", "tie"]})
    ds = make_dataset(preferences=prefs, name="p")
    save_dataset(ds, tmp_path / "p")
    back = load_dataset(tmp_path / "p")
    assert back.outcomes is None and list(back.preferences["winner"]) == ["a", "tie"]
    assert back.models == ["x", "y", "z"] and back.preferences["weight"].tolist() == [1.0, 1.0]
    with pytest.raises(UserError, match="preference pairs only"):
        back.outcome_matrix()


def test_load_errors(tmp_path):
    with pytest.raises(UserError, match="not a routerzoo dataset"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"schema_version": 1, "tables": ["outcomes"], "models": ["m"],
                                                       "sha256": "0" * 64}))
    (tmp_path / "outcomes.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(DataError, match="cannot read table") as err:
        load_dataset(tmp_path)
    assert "outcomes.parquet" in str(err.value)

"""Importers: real published files (from ../shared/data, skipped when absent) and every failure path."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from routerzoo.data.dataset import load_dataset, save_dataset
from routerzoo.data.importers import FORMATS, import_files, read_files
from routerzoo.data.prices import PriceTable
from routerzoo.errors import DataError, UserError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = Path(os.environ.get("ROUTERZOO_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
MMLU_PRO = SHARED / "mmlu-pro" / "eval_results"
ROUTELLM = SHARED / "routellm" / "routellm" / "evals"
ROUTERARENA = SHARED / "routerarena" / "cached_results"
ALPACA = SHARED / "alpaca-eval" / "results"


def shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set ROUTERZOO_SHARED_DATA to the shared/data folder)")
    return path


def zip_of(model: str) -> Path:
    return shared(MMLU_PRO / f"model_outputs_{model}_5shots.zip")


def where(exc: DataError) -> tuple:
    return exc.file, exc.row, exc.field


# ---------------------------------------------------------------------------------------------
# registry


def test_registry_lists_every_format_with_docs():
    assert list(FORMATS) == ["mmlu-pro", "routellm", "routerarena", "alpaca-eval", "routerbench", "long",
                             "scores-json", "pairwise", "serve-log"]
    for name, imp in FORMATS.items():
        assert imp.name == name
        assert len(imp.doc) > 300, name  # the module docstring is the format's user documentation
        assert imp.summary


def test_unknown_format_lists_formats(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("prompt,model,quality,cost\nhi,m,1,0\n")
    with pytest.raises(UserError) as e:
        import_files([f], "csv")
    assert "unknown format 'csv'" in str(e.value)
    for name in FORMATS:
        assert name in str(e.value)


def test_missing_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        import_files([tmp_path / "nope.csv"], "long")
    with pytest.raises(UserError, match="price file .* does not exist"):
        import_files([FIXTURES / "routerbench_small.csv"], "routerbench", prices=tmp_path / "nope.yaml")


# ---------------------------------------------------------------------------------------------
# MMLU-Pro (real)


def test_mmlu_pro_real_two_zips():
    ds = import_files([zip_of("gemini-1.5-pro-002"), zip_of("Mistral-7B-Instruct-v0.1")], "mmlu-pro")
    m = ds.manifest
    assert m["models"] == ["gemini-1.5-pro-002", "Mistral-7B-Instruct-v0.1"]
    pm = m["per_model"]
    assert pm["gemini-1.5-pro-002"]["n"] == 12020
    assert pm["gemini-1.5-pro-002"]["mean_quality"] == pytest.approx(0.702, abs=0.001)
    assert pm["Mistral-7B-Instruct-v0.1"]["n"] == 12032
    assert pm["Mistral-7B-Instruct-v0.1"]["mean_quality"] == pytest.approx(0.242, abs=0.001)
    # prices: from the bundled list, recorded with their source
    assert m["prices"]["gemini-1.5-pro-002"]["input"] == 1.25
    assert m["prices"]["gemini-1.5-pro-002"]["output"] == 5.0
    assert "mmlu_pro.yaml" in m["prices"]["gemini-1.5-pro-002"]["source"]
    assert set(m["prices"]) == set(m["models"])
    o = ds.outcomes
    assert o["category"].nunique() == 14
    assert o["input_tokens"].min() > 5 and o["output_tokens"].mean() > 20
    row = o[(o["prompt_id"] == "70") & (o["model"] == "Mistral-7B-Instruct-v0.1")].iloc[0]
    assert row["prompt"].startswith("Typical advertising regulatory bodies suggest")
    assert "\nA. Safe practices, Fear, Jealousy, Trivial\n" in row["prompt"]
    assert "\nI. Unsafe practices, Distress, Fear, Serious" in row["prompt"]
    assert row["quality"] == 0.0  # pred D, answer I
    assert row["response"].startswith(" We refer to Wikipedia")
    price = m["prices"]["Mistral-7B-Instruct-v0.1"]
    assert row["cost"] == pytest.approx((row["input_tokens"] * price["input"] + row["output_tokens"] * price["output"]) / 1e6)
    # the strong model costs clearly more per question than the 7B one
    assert pm["gemini-1.5-pro-002"]["mean_cost"] > 4 * pm["Mistral-7B-Instruct-v0.1"]["mean_cost"]
    assert [s["models"] for s in m["sources"]] == [["gemini-1.5-pro-002"], ["Mistral-7B-Instruct-v0.1"]]
    assert all(len(s["sha256"]) == 64 and s["format"] == "mmlu-pro" for s in m["sources"])
    assert any("cl100k_base" in n for n in m["notes"])
    assert m["counts"]["outcomes"] == 12020 + 12032
    assert sum(m["counts"]["splits"].values()) == m["counts"]["prompts"]


def test_mmlu_pro_fingerprint_stable_and_saved(tmp_path):
    a = import_files([zip_of("Yi-6b-Chat")], "mmlu-pro")
    b = import_files([MMLU_PRO / "model_outputs_Yi-6b-Chat_5shots.zip"], "mmlu-pro", name="again")
    assert a.manifest["sha256"] == b.manifest["sha256"]
    assert a.manifest["per_model"]["Yi-6b-Chat"]["mean_quality"] == pytest.approx(0.268, abs=0.001)
    out = save_dataset(a, tmp_path / "ds")
    loaded = load_dataset(out)
    assert loaded.manifest["sha256"] == a.manifest["sha256"]
    assert loaded.manifest["prices"]["Yi-6b-Chat"]["input"] == 0.2
    assert len(loaded.outcomes) == 12032


def test_mmlu_pro_skips_junk_records_and_reports_them():
    res = read_files([zip_of("DeepSeek-Coder-V2")], "mmlu-pro")
    assert len(res.outcomes) == 10351
    assert any("skipped 43 record(s) that are not JSON objects" in n for n in res.notes)
    assert res.outcomes["quality"].mean() == pytest.approx(0.636, abs=0.001)


def test_mmlu_pro_user_prices_override_bundled(tmp_path):
    prices = tmp_path / "p.yaml"
    prices.write_text("gemini-1.5-flash-002: {input: 100, output: 100, source: made up}\n")
    ds = import_files([zip_of("gemini-1.5-flash-002")], "mmlu-pro", prices=prices)
    p = ds.manifest["prices"]["gemini-1.5-flash-002"]
    assert (p["input"], p["output"]) == (100.0, 100.0)
    assert str(prices) in p["source"] and "made up" in p["source"]
    o = ds.outcomes
    assert o["cost"].to_numpy() == pytest.approx((o["input_tokens"] + o["output_tokens"]).to_numpy(dtype=float) * 1e-4)


@pytest.mark.slow
def test_mmlu_pro_all_fifteen_models():
    ds = import_files([shared(MMLU_PRO)], "mmlu-pro")
    expected = {
        "gemini-1.5-pro-002": 0.702, "gemini-1.5-flash-002": 0.641, "DeepSeek-Coder-V2": 0.636,
        "Meta-Llama-3_1-70B-Instruct": 0.628, "jamba-1.5-large": 0.495, "Qwen1.5-72B-Chat": 0.471,
        "Meta-Llama-3_1-8B-Instruct": 0.442, "mathstral-7B": 0.420, "Mixtral-8x7B-Instruct-v0.1": 0.419,
        "Phi-3-mini-4k-instruct": 0.415, "c4ai-command-r-v01": 0.366, "Mistral-7B-Instruct-v0.2": 0.288,
        "Yi-6b-Chat": 0.268, "Qwen1.5-7B-Chat": 0.264, "Mistral-7B-Instruct-v0.1": 0.242,
    }
    pm = ds.manifest["per_model"]
    assert set(pm) == set(expected)
    for model, acc in expected.items():
        assert pm[model]["mean_quality"] == pytest.approx(acc, abs=0.001), model
    assert ds.manifest["counts"]["prompts"] == 12032 + 17  # 17 re-worded questions get '~2' ids
    assert any("17 question id(s)" in n for n in ds.manifest["notes"])


# ---------------------------------------------------------------------------------------------
# MMLU-Pro (failure paths, synthetic zips)


def _record(qid=1, **over):
    rec = {"question_id": qid, "question": f"Question {qid}?", "options": ["yes", "no", "maybe"], "answer": "A",
           "answer_index": 0, "cot_content": "", "category": "math", "src": "x", "pred": "A",
           "model_outputs": "The answer is (A)."}
    rec.update(over)
    return rec


def _zip(tmp_path: Path, model: str, payload, name: str | None = None) -> Path:
    path = tmp_path / f"model_outputs_{model}_5shots.zip"
    text = payload if isinstance(payload, str) else json.dumps(payload)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name or f"model_outputs_{model}_5shots.json", text)
    return path


def test_mmlu_pro_synthetic_zip_and_directory(tmp_path):
    recs = [_record(1), _record(2, pred=None), _record(3, pred="B"), "junk", _record(4, model_outputs=None, generated_text="B")]
    _zip(tmp_path, "gemini-1.5-flash-002", recs)
    ds = import_files([tmp_path], "mmlu-pro")
    o = ds.outcomes.set_index("prompt_id")
    assert o.loc[["1", "2", "3", "4"], "quality"].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert o.loc["4", "response"] == "B"
    assert o.loc["1", "prompt"] == "Question 1?\nA. yes\nB. no\nC. maybe"
    assert any("skipped 1 record(s)" in n for n in ds.manifest["notes"])


def test_mmlu_pro_format_mismatch_csv(tmp_path):
    f = tmp_path / "results.csv"
    f.write_text("prompt,model,quality\nhi,m,1\n")
    with pytest.raises(DataError) as e:
        import_files([f], "mmlu-pro")
    assert e.value.file == str(f)
    assert "format mismatch" in str(e.value) and str(f) in str(e.value)


def test_mmlu_pro_corrupt_and_truncated_zip(tmp_path):
    bad = tmp_path / "model_outputs_x_5shots.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip file" * 10)
    with pytest.raises(DataError) as e:
        import_files([bad], "mmlu-pro")
    assert e.value.file == str(bad) and "zip" in str(e.value)
    good = _zip(tmp_path, "y", [_record(i) for i in range(1, 200)])
    cut = tmp_path / "model_outputs_z_5shots.zip"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError) as e:
        import_files([cut], "mmlu-pro")
    assert e.value.file == str(cut)


def test_mmlu_pro_truncated_json_in_zip(tmp_path):
    text = json.dumps([_record(1), _record(2)], indent=1)
    path = _zip(tmp_path, "m", text[: len(text) // 2])
    with pytest.raises(DataError) as e:
        import_files([path], "mmlu-pro")
    assert e.value.file.startswith(str(path)) and "truncated JSON" in str(e.value)
    assert e.value.row is not None


def test_mmlu_pro_missing_field_and_duplicate_id(tmp_path):
    rec = _record(2)
    del rec["pred"]
    path = _zip(tmp_path, "m", [_record(1), rec])
    with pytest.raises(DataError) as e:
        import_files([path], "mmlu-pro")
    assert where(e.value) == (f"{path}::model_outputs_m_5shots.json", 2, "pred")
    path = _zip(tmp_path, "m", [_record(1), _record(2), _record(1)])
    with pytest.raises(DataError) as e:
        import_files([path], "mmlu-pro")
    assert e.value.row == 3 and e.value.field == "question_id" and "twice" in str(e.value)


def test_mmlu_pro_empty_list_and_unknown_model_price(tmp_path):
    path = _zip(tmp_path, "m", [])
    with pytest.raises(DataError, match="empty"):
        import_files([path], "mmlu-pro")
    path = _zip(tmp_path, "my-secret-model-7b", [_record(1)])
    with pytest.raises(UserError) as e:
        import_files([path], "mmlu-pro")
    assert "my-secret-model-7b" in str(e.value) and "--prices" in str(e.value)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"my-secret-model-7b": {"input": 1, "output": 2}}))
    ds = import_files([path], "mmlu-pro", prices=prices)
    assert ds.manifest["prices"]["my-secret-model-7b"]["output"] == 2.0


def test_mmlu_pro_text_variants_get_their_own_ids(tmp_path):
    d = tmp_path / "zips"
    d.mkdir()
    _zip(d, "a", [_record(1), _record(2)])
    _zip(d, "b", [_record(1), _record(2)])
    _zip(d, "c", [_record(1), _record(2, question="Question 2, reworded?")])
    ds = import_files([d], "mmlu-pro", prices=_prices(tmp_path, ["a", "b", "c"]))
    o = ds.outcomes
    assert sorted(o["prompt_id"].unique()) == ["1", "2", "2~2"]
    assert o.loc[o["prompt_id"] == "2~2", "model"].tolist() == ["c"]


def _prices(tmp_path: Path, models) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text("".join(f"{m}: {{input: 1.0, output: 2.0}}\n" for m in models))
    return path


# ---------------------------------------------------------------------------------------------
# RouteLLM (real)


def test_routellm_gsm8k_real():
    ds = import_files([shared(ROUTELLM / "gsm8k")], "routellm")
    m = ds.manifest
    pm = m["per_model"]
    # 1,319 questions, 12 flagged as contaminated by RouteLLM and excluded
    assert m["counts"]["prompts"] == 1307
    assert pm["mistralai/Mixtral-8x7B-Instruct-v0.1"]["mean_quality"] == pytest.approx(0.638, abs=0.002)
    assert pm["gpt-4-1106-preview"]["mean_quality"] == pytest.approx(0.857, abs=0.002)
    assert any("12 contaminated" in n for n in m["notes"])
    assert m["prices"]["gpt-4-1106-preview"]["input"] == 10.0 and m["prices"]["gpt-4-1106-preview"]["output"] == 30.0
    assert "genai-prices" in m["prices"]["gpt-4-1106-preview"]["source"]
    assert m["prices"]["mistralai/Mixtral-8x7B-Instruct-v0.1"]["output"] == 0.7
    o = ds.outcomes
    assert o["response"].notna().all() and o["output_tokens"].min() > 0
    assert o["prompt_id"].str.match(r"^gsm8k-[0-9a-f]{16}$").all()
    assert (o["category"] == "gsm8k").all()
    assert pm["gpt-4-1106-preview"]["mean_cost"] > 10 * pm["mistralai/Mixtral-8x7B-Instruct-v0.1"]["mean_cost"]


def test_routellm_mmlu_csvs_real():
    files = [shared(ROUTELLM / "mmlu" / "responses" / f"mmlu_{s}.csv") for s in ("anatomy", "astronomy", "virology")]
    res = read_files(files, "routellm")
    o = res.outcomes
    assert set(o["category"]) == {"anatomy", "astronomy", "virology"}
    assert (o["output_tokens"] == 1).all()  # RouteLLM generated one answer token per MMLU question
    assert o["prompt_id"].str.startswith("mmlu-").all()
    anatomy = o[o["category"] == "anatomy"]
    assert len(anatomy) == 2 * 135
    ds = import_files(files, "routellm")
    assert ds.manifest["counts"]["models"] == 2
    # the same files give the same ids
    assert sorted(read_files(files, "routellm").outcomes["prompt_id"]) == sorted(o["prompt_id"])


def test_routellm_mt_bench_real():
    res = read_files([shared(ROUTELLM / "mt_bench")], "routellm")
    o = res.outcomes
    t2 = o["prompt_id"].str.endswith("-t2")
    assert o.loc[~t2, "prompt_id"].nunique() == 72 and o.loc[t2, "prompt_id"].nunique() == 72  # 80 - 8 contaminated
    assert o["quality"].between(0.1, 1.0).all()
    assert o["response"].notna().all()
    first = o[(o["prompt_id"] == "mt_bench-81") | (o["prompt_id"] == "mt_bench-81-t2")]
    assert first.empty  # question 81 is on RouteLLM's contamination list
    q = o[o["prompt_id"] == "mt_bench-102-t2"].iloc[0]
    assert "\n\n" in q["prompt"]
    # turn 2's input includes turn 1, the model's first answer and turn 2
    t1_in = o[(o["prompt_id"] == "mt_bench-102") & (o["model"] == q["model"])]["input_tokens"].iloc[0]
    assert q["input_tokens"] > t1_in
    assert any("8 contaminated" in n for n in res.notes)


def test_routellm_missing_judgements_and_bad_bool(tmp_path):
    (tmp_path / "question.jsonl").write_text(json.dumps({"question_id": 1, "category": "x", "turns": ["hi", "more"]}) + "\n")
    with pytest.raises(DataError, match="judgements.jsonl"):
        import_files([tmp_path / "question.jsonl"], "routellm")
    f = tmp_path / "mmlu_test.csv"
    f.write_text("prompt,gpt-4-1106-preview\nq1,True\nq2,maybe\n")
    with pytest.raises(DataError) as e:
        import_files([f], "routellm")
    assert where(e.value) == (str(f), 2, "gpt-4-1106-preview")


def test_routellm_contamination_beside_file(tmp_path):
    f = tmp_path / "gsm8k_responses.csv"
    f.write_text("prompt,gpt-4-1106-preview\nWhat is 1+1?,True\nWhat is 2+2?,False\n")
    (tmp_path / "contaminated_prompts.jsonl").write_text(json.dumps({"eval_prompt": "What is 2+2?"}) + "\n")
    res = read_files([f], "routellm")
    assert res.outcomes["prompt"].tolist() == ["What is 1+1?"]
    assert any("1 contaminated" in n for n in res.notes)


# ---------------------------------------------------------------------------------------------
# RouterArena


def test_routerarena_real():
    ds = import_files([shared(ROUTERARENA)], "routerarena")
    m = ds.manifest
    assert m["counts"]["prompts"] == 809
    pm = m["per_model"]
    assert pm["claude-3-haiku-20240307"]["mean_quality"] == pytest.approx(0.523, abs=0.001)
    assert pm["gemini-2.0-flash-001"]["mean_quality"] == pytest.approx(0.690, abs=0.001)
    assert pm["claude-3-haiku-20240307"]["mean_cost"] * 809 == pytest.approx(0.142, abs=0.001)
    assert pm["gemini-2.0-flash-001"]["mean_cost"] * 809 == pytest.approx(0.038, abs=0.001)
    o = ds.outcomes
    assert (o["category"] == "MMLUPro").sum() == 2 * 236
    assert o["input_tokens"].notna().all()
    assert o.set_index(["prompt_id", "model"]).loc[("AIME_112", "claude-3-haiku-20240307"), "input_tokens"] == 349
    assert m["prices"]["claude-3-haiku-20240307"]["input"] == 0.25  # from model_cost/cost.json beside the data
    assert "inference_cost" in m["prices"]["claude-3-haiku-20240307"]["source"]
    assert any("clipped 1 score" in n for n in m["notes"])


def _arena_record(i, **over):
    rec = {"global_index": f"MMLU_{i}", "question": f"Q{i}?", "llm_selected": "claude-3-haiku-20240307",
           "generated_answer": "A", "token_usage": {"input_tokens": 10, "output_tokens": 5},
           "evaluation_result": {"score": 1.0, "inference_cost": 0.001}}
    rec.update(over)
    return rec


def test_routerarena_repr_strings_and_costs_from_prices(tmp_path):
    f = tmp_path / "some-model.jsonl"
    recs = [
        _arena_record(1, token_usage=repr({"input_tokens": 1000, "output_tokens": 2000}),
                      evaluation_result=repr({"score": 0.5, "inference_cost": None, "metric": "x"}), llm_selected=None),
        _arena_record(2, evaluation_result=json.dumps({"score": 1, "inference_cost": 0.25})),
    ]
    f.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    with pytest.raises(UserError) as e:
        import_files([f], "routerarena")
    assert "some-model" in str(e.value) and "--prices" in str(e.value)
    res = read_files([f], "routerarena", prices=_prices(tmp_path, ["some-model", "claude-3-haiku-20240307"]))
    o = res.outcomes.set_index("prompt_id")
    assert o.loc["MMLU_1", "model"] == "some-model"  # from the file name
    assert o.loc["MMLU_1", "cost"] == pytest.approx((1000 * 1.0 + 2000 * 2.0) / 1e6)
    assert o.loc["MMLU_2", "cost"] == 0.25 and o.loc["MMLU_2", "quality"] == 1.0


def test_routerarena_bad_records(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_text(json.dumps(_arena_record(1)) + "\n" + json.dumps(_arena_record(2, evaluation_result={"score": 7})) + "\n")
    with pytest.raises(DataError) as e:
        import_files([f], "routerarena")
    assert where(e.value) == (str(f), 2, "evaluation_result.score") and "outside [0, 1]" in str(e.value)
    f.write_text(json.dumps(_arena_record(1)) + "\n" + json.dumps(_arena_record(1)) + "\n")
    with pytest.raises(DataError) as e:
        import_files([f], "routerarena")
    assert where(e.value) == (str(f), 2, "global_index")
    f.write_text(json.dumps(_arena_record(1)) + "\n" + json.dumps(_arena_record(2, evaluation_result="{'score': oops")) + "\n")
    with pytest.raises(DataError) as e:
        import_files([f], "routerarena")
    assert where(e.value) == (str(f), 2, "evaluation_result")
    f.write_text(json.dumps(_arena_record(1)) + "\n" + '{"global_index": "MMLU_2", "question": "trunc')
    with pytest.raises(DataError) as e:
        import_files([f], "routerarena")
    assert e.value.file == str(f) and e.value.row == 2 and "truncated JSON" in str(e.value)


# ---------------------------------------------------------------------------------------------
# AlpacaEval


def test_alpaca_eval_real():
    files = [shared(ALPACA / m / "weighted_alpaca_eval_gpt4_turbo" / "annotations.json")
             for m in ("FuseChat-Llama-3.2-1B-Instruct", "claude-2.1")]
    ds = import_files(files, "alpaca-eval")
    p = ds.preferences
    assert ds.outcomes is None
    assert len(p) == 2 * 805 and ds.manifest["counts"]["prompts"] == 805
    assert p.groupby("model_b").size().tolist() == [805, 805]
    wins = p.assign(b=p["winner"] == "b").groupby("model_b")["b"].mean()
    assert wins["FuseChat-Llama-3.2-1B-Instruct"] == pytest.approx(0.289, abs=0.001)
    assert wins["claude-2.1"] == pytest.approx(0.143, abs=0.001)
    assert set(p["model_a"]) == {"gpt4_1106_preview"}
    assert set(p["category"]) == {"selfinstruct", "oasst", "koala", "helpful_base", "vicuna"}
    assert (p["winner"] == "tie").sum() == 4  # preference exactly 1.5
    assert any("CC BY-NC" in n for n in ds.manifest["notes"])
    assert ds.manifest["models"][0] == "gpt4_1106_preview"


def test_alpaca_eval_bad_preference(tmp_path):
    f = tmp_path / "annotations.json"
    rec = {"instruction": "Say hi", "generator_1": "a", "generator_2": "b", "preference": 1.7, "dataset": "x"}
    f.write_text(json.dumps([rec, dict(rec, instruction="Say bye", preference=3.0)]))
    with pytest.raises(DataError) as e:
        import_files([f], "alpaca-eval")
    assert where(e.value) == (str(f), 2, "preference")
    f.write_text(json.dumps([rec, dict(rec, preference=None), dict(rec, instruction="x", preference=1.2)]))
    res = read_files([f], "alpaca-eval")
    assert res.preferences["winner"].tolist() == ["b", "a"]
    assert any("null preference" in n for n in res.notes)


# ---------------------------------------------------------------------------------------------
# RouterBench


def test_routerbench_fixture():
    ds = import_files([FIXTURES / "routerbench_small.csv"], "routerbench")
    m = ds.manifest
    assert m["models"] == ["gpt-4-1106-preview", "gpt-3.5-turbo-1106", "mistralai/mistral-7b-chat"]
    assert m["counts"]["prompts"] == 12 and m["counts"]["outcomes"] == 36
    o = ds.outcomes
    assert "grade-school-math" in set(o["category"]) and "mt-bench" in set(o["category"])
    gpt4 = o[o["model"] == "gpt-4-1106-preview"]
    assert gpt4["cost"].mean() > 10 * o[o["model"] == "mistralai/mistral-7b-chat"]["cost"].mean()
    assert o.set_index(["prompt_id", "model"]).loc[("mbpp.test.17", "gpt-4-1106-preview"), "response"].startswith("def is_palindrome")
    assert m["prices"] == {}  # all costs come from the |total_cost columns


def test_routerbench_parquet_and_pickle(tmp_path, capsys):
    df = pd.read_csv(FIXTURES / "routerbench_small.csv")
    pq = tmp_path / "rb.parquet"
    df.to_parquet(pq)
    a = import_files([pq], "routerbench")
    b = import_files([FIXTURES / "routerbench_small.csv"], "routerbench")
    assert a.manifest["sha256"] == b.manifest["sha256"]
    pkl = tmp_path / "routerbench_0shot.pkl"
    df.to_pickle(pkl)
    with pytest.raises(UserError) as e:
        import_files([pkl], "routerbench")
    assert "--trust-pickle" in str(e.value) and "runs code" in str(e.value)
    assert capsys.readouterr().err == ""
    ds = import_files([pkl], "routerbench", trust_pickle=True)
    assert ds.manifest["sha256"] == b.manifest["sha256"]
    assert "unpickling" in capsys.readouterr().err


def test_routerbench_missing_cost_column_uses_prices(tmp_path):
    df = pd.read_csv(FIXTURES / "routerbench_small.csv").drop(columns=["mistralai/mistral-7b-chat|total_cost"])
    f = tmp_path / "rb.csv"
    df.to_csv(f, index=False)
    with pytest.raises(UserError) as e:
        import_files([f], "routerbench")
    assert "mistralai/mistral-7b-chat" in str(e.value) and "--prices" in str(e.value)
    ds = import_files([f], "routerbench", prices=_prices(tmp_path, ["mistralai/mistral-7b-chat"]))
    o = ds.outcomes[ds.outcomes["model"] == "mistralai/mistral-7b-chat"]
    assert (o["cost"] == (o["input_tokens"] * 1.0 + o["output_tokens"] * 2.0) / 1e6).all()


def test_routerbench_bad_columns(tmp_path):
    df = pd.read_csv(FIXTURES / "routerbench_small.csv")
    f = tmp_path / "rb.csv"
    df.rename(columns={"gpt-3.5-turbo-1106|total_cost": "gpt-3.5-turbo-1106|price"}).to_csv(f, index=False)
    with pytest.raises(DataError) as e:
        import_files([f], "routerbench", strict=True)
    assert e.value.field == "gpt-3.5-turbo-1106|price"
    notes = import_files([f], "routerbench").manifest["notes"]  # not strict: ignored with a warning
    assert any("warning: ignored unknown column(s) ['gpt-3.5-turbo-1106|price']" in n for n in notes)
    df.rename(columns={"gpt-3.5-turbo-1106|total_cost": "gpt-3.5-turbo-1106|total_cots"}).to_csv(f, index=False)
    with pytest.raises(DataError, match="did you mean 'gpt-3.5-turbo-1106|total_cost'"):
        import_files([f], "routerbench")
    bad = df.copy()
    bad.loc[4, "gpt-4-1106-preview"] = 1.5
    bad.to_csv(f, index=False)
    with pytest.raises(DataError) as e:
        import_files([f], "routerbench")
    assert where(e.value) == (str(f), 5, "gpt-4-1106-preview")
    dup = df.copy()
    dup.loc[7, "sample_id"] = dup.loc[2, "sample_id"]  # reused for a different prompt: disambiguated
    dup.to_csv(f, index=False)
    ds = import_files([f], "routerbench")
    sid = dup.loc[2, "sample_id"]
    assert {sid, f"{sid}~2"} <= set(ds.outcomes["prompt_id"]) and ds.manifest["counts"]["prompts"] == 12
    assert any("reused for a different prompt" in n for n in ds.manifest["notes"])
    dup.loc[7, "prompt"] = dup.loc[2, "prompt"]  # the same prompt twice under one id: an error
    dup.to_csv(f, index=False)
    with pytest.raises(DataError) as e:
        import_files([f], "routerbench")
    assert where(e.value) == (str(f), 8, "sample_id")


# ---------------------------------------------------------------------------------------------
# long


LONG_CSV = """prompt_id,prompt,model,quality,cost,category
q1,What is 2+2?,gpt-4o-mini,1,0.00002,math
q1,What is 2+2?,open-mistral-7b,1,0.00001,math
q2,Name a prime number above 10.,gpt-4o-mini,1,0.00003,math
q2,Name a prime number above 10.,open-mistral-7b,0,0.00001,math
"""


def test_long_csv_jsonl_parquet_agree(tmp_path):
    csv = tmp_path / "a.csv"
    csv.write_text(LONG_CSV)
    df = pd.read_csv(csv)
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in df.to_dict("records")) + "\n")
    pq = tmp_path / "a.parquet"
    df.to_parquet(pq)
    shas = {import_files([p], "long").manifest["sha256"] for p in (csv, jsonl, pq)}
    assert len(shas) == 1
    ds = import_files([csv], "long")
    assert ds.manifest["per_model"]["open-mistral-7b"]["mean_quality"] == 0.5
    assert ds.manifest["prices"] == {}


def test_long_costs_from_tokens_and_genai_prices(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("prompt,model,quality,input_tokens,output_tokens,response\n"
                 "Hello there,gpt-4-1106-preview,0.5,1000,1000,\n"
                 "Hello there,mistralai/Mixtral-8x7B-Instruct-v0.1,0.25,,,General Kenobi\n")
    ds = import_files([f], "long")
    o = ds.outcomes.set_index("model")
    assert o.loc["gpt-4-1106-preview", "cost"] == pytest.approx((1000 * 10 + 1000 * 30) / 1e6)
    assert o.loc["mistralai/Mixtral-8x7B-Instruct-v0.1", "input_tokens"] == 2  # counted: "Hello there"
    assert o.loc["mistralai/Mixtral-8x7B-Instruct-v0.1", "output_tokens"] > 0
    assert o["prompt_id"].nunique() == 1 and len(o["prompt_id"].iloc[0]) == 16  # hash of the prompt
    assert ds.manifest["prices"]["mistralai/Mixtral-8x7B-Instruct-v0.1"]["input"] == 0.7


def test_long_no_price_names_model(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("prompt,model,quality,input_tokens,output_tokens\nHi,acme-llm-9000,1,10,10\n")
    with pytest.raises(UserError) as e:
        import_files([f], "long")
    assert "acme-llm-9000" in str(e.value) and "--prices" in str(e.value)
    ds = import_files([f], "long", prices=_prices(tmp_path, ["acme-llm-9000"]))
    assert ds.outcomes["cost"].iloc[0] == pytest.approx((10 * 1.0 + 10 * 2.0) / 1e6)
    assert ds.manifest["prices"]["acme-llm-9000"]["source"].startswith("price file")


def test_long_unknown_column_warns_or_fails_when_strict(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("prompt,model,quality,cost,temperature\nhi,m,1,0,0.7\n")
    ds = import_files([f], "long")
    assert any("warning: ignored unknown column(s) ['temperature']" in n for n in ds.manifest["notes"])
    assert "temperature" not in ds.outcomes.columns
    with pytest.raises(DataError, match="unknown column 'temperature'") as e:
        import_files([f], "long", strict=True)
    assert e.value.field == "temperature"


@pytest.mark.parametrize("content,message,row,field", [
    ("", "empty", None, None),
    ("prompt,model,quality,cost\n", "no records", None, None),
    ("prompt,model,qualty,cost\nhi,m,1,0\n", "did you mean 'quality'", None, "quality"),
    ("prompt,model,quality,cots\nhi,m,1,0\n", "did you mean 'cost'", None, "cots"),
    ("prompt,model,cost\nhi,m,0\n", "missing required column", None, "quality"),
    ("prompt,model,quality,cost\nhi,m,1,0\nho,m,1.7,0\n", "outside [0, 1]", 2, "quality"),
    ("prompt,model,quality,cost\nhi,m,1,0\nho,m,1,-2\n", "negative", 2, "cost"),
    ("prompt,model,quality,cost\nhi,m,1,0\nho,m,one,0\n", "not a number", 2, "quality"),
    ("prompt_id,prompt,model,quality,cost\np1,hi,m,1,0\np2,ho,m,1,0\np1,hi,m,0,0\n", "duplicate prompt_id", 3, "prompt_id"),
    ("prompt_id,prompt,model,quality,cost\np1,hi,m,1,0\np1,ho,n,1,0\n", "different prompt texts", 2, "prompt_id"),
    ('prompt,model,quality,cost\n"unclosed,m,1,0\n', "quoted field is not closed", 1, None),
])
def test_long_bad_files(tmp_path, content, message, row, field):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    with pytest.raises(DataError) as e:
        import_files([f], "long")
    assert message in str(e.value)
    assert e.value.file == str(f) and str(f) in str(e.value)
    assert (e.value.row, e.value.field) == (row, field)
    if row is not None:
        assert f"row {row}" in str(e.value)
    if field is not None:
        assert f"field '{field}'" in str(e.value)


def test_long_corrupt_parquet_and_truncated_jsonl(tmp_path):
    pq = tmp_path / "a.parquet"
    pq.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(DataError) as e:
        import_files([pq], "long")
    assert e.value.file == str(pq) and "Parquet" in str(e.value)
    jl = tmp_path / "a.jsonl"
    jl.write_text('{"prompt": "hi", "model": "m", "quality": 1, "cost": 0}\n{"prompt": "ho", "model"')
    with pytest.raises(DataError) as e:
        import_files([jl], "long")
    assert (e.value.file, e.value.row) == (str(jl), 2)


# ---------------------------------------------------------------------------------------------
# scores-json


def test_scores_json_list_and_jsonl(tmp_path):
    recs = [
        {"id": "q1", "question": "Capital of Australia?", "category": "geo", "scores": {"big": 1.0, "small": 0.0},
         "costs": {"big": 0.002, "small": 0.0001}},
        {"question": "2+2?", "scores": {"big": 1, "small": 1, "absent": None},
         "tokens": {"big": {"input": 1000, "output": 100}, "small": [1000, 100]}},
    ]
    f = tmp_path / "s.json"
    f.write_text(json.dumps(recs))
    prices = _prices(tmp_path, ["big", "small"])
    ds = import_files([f], "scores-json", prices=prices)
    o = ds.outcomes.set_index(["prompt_id", "model"])
    assert o.loc[("q1", "big"), "cost"] == 0.002
    pid = [p for p in o.index.get_level_values(0) if p != "q1"][0]
    assert len(pid) == 16
    assert o.loc[(pid, "small"), "cost"] == pytest.approx((1000 * 1.0 + 100 * 2.0) / 1e6)
    assert len(o) == 4  # null score left out
    jl = tmp_path / "s.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in recs))
    assert import_files([jl], "scores-json", prices=prices).manifest["sha256"] == ds.manifest["sha256"]


def test_scores_json_without_cost_or_price_names_model(tmp_path):
    f = tmp_path / "s.json"
    f.write_text(json.dumps([{"question": "hi", "scores": {"mystery-model-x": 0.5}}]))
    with pytest.raises(UserError) as e:
        import_files([f], "scores-json")
    assert "mystery-model-x" in str(e.value) and "--prices" in str(e.value)
    res = read_files([f], "scores-json", prices=_prices(tmp_path, ["mystery-model-x"]))
    assert any("input tokens only" in n for n in res.notes)


@pytest.mark.parametrize("records,message,row,field", [
    ([{"question": "a", "scores": {"m": 1.5}}], "outside [0, 1]", 1, "scores.m"),
    ([{"question": "a", "scores": {"m": 1}, "costs": {"m": 0}}, {"question": "b", "scores": {"m": 1}, "costz": {}}],
     "unknown field", 2, "costz"),
    ([{"id": "x", "question": "a", "scores": {"m": 1}, "costs": {"m": 0}},
      {"id": "x", "question": "b", "scores": {"m": 1}, "costs": {"m": 0}}], "twice", 2, "id"),
    ([{"question": "a", "scores": {}}], "scores", 1, "scores"),
    ([{"question": "", "scores": {"m": 1}}], "question", 1, "question"),
    ([{"question": "a", "scores": {"m": "high"}}], "not a number", 1, "scores.m"),
])
def test_scores_json_bad_records(tmp_path, records, message, row, field):
    f = tmp_path / "s.json"
    f.write_text(json.dumps(records))
    with pytest.raises(DataError) as e:
        import_files([f], "scores-json")
    assert message in str(e.value)
    assert where(e.value) == (str(f), row, field)


def test_scores_json_truncated(tmp_path):
    f = tmp_path / "s.json"
    f.write_text('[{"question": "a", "scores": {"m": 1}}, {"question": "b", "sco')
    with pytest.raises(DataError) as e:
        import_files([f], "scores-json")
    assert e.value.file == str(f) and "truncated JSON" in str(e.value) and e.value.row == 1
    f.write_text("   \n")
    with pytest.raises(DataError, match="empty"):
        import_files([f], "scores-json")


# ---------------------------------------------------------------------------------------------
# pairwise


def test_pairwise_aliases(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("prompt,model_a,model_b,winner,weight\n"
                 "Write a haiku.,gpt-4o,llama,model_a,\n"
                 "What is 17*23?,gpt-4o,llama,tie (bothbad),2\n"
                 "What is 17*23?,llama,gpt-4o,B,\n"
                 "Hi,gpt-4o,llama,Tie,\n")
    ds = import_files([f], "pairwise")
    p = ds.preferences
    assert p["winner"].tolist() == ["a", "tie", "b", "tie"]
    assert p["weight"].tolist() == [1.0, 2.0, 1.0, 1.0]
    assert p["prompt_id"].nunique() == 3
    assert ds.manifest["counts"]["preferences"] == 4


@pytest.mark.parametrize("content,message,row,field", [
    ("prompt,model_a,model_b,winner\nhi,x,y,a\nho,x,y,model_c\n", "unknown winner 'model_c'", 2, "winner"),
    ("prompt,model_a,model_b,winner\nhi,x,y,\n", "unknown winner", 1, "winner"),
    ("prompt,model_a,model_b,winer\nhi,x,y,a\n", "did you mean 'winner'", None, "winner"),
    ("prompt,model_a,winner\nhi,x,a\n", "missing required column", None, "model_b"),
    ("prompt,model_a,model_b,winner\nhi,x,x,a\n", "both 'x'", 1, "model_b"),
    ("prompt,model_a,model_b,winner,weight\nhi,x,y,a,-1\n", "positive", 1, "weight"),
])
def test_pairwise_bad_files(tmp_path, content, message, row, field):
    f = tmp_path / "p.csv"
    f.write_text(content)
    with pytest.raises(DataError) as e:
        import_files([f], "pairwise")
    assert message in str(e.value)
    assert where(e.value) == (str(f), row, field)


def test_pairwise_jsonl(tmp_path):
    f = tmp_path / "p.jsonl"
    rows = [{"prompt_id": 7, "prompt": "hi", "model_a": "x", "model_b": "y", "winner": "model_b", "category": "chat"}]
    f.write_text("\n".join(json.dumps(r) for r in rows))
    p = import_files([f], "pairwise").preferences
    assert p.iloc[0][["prompt_id", "winner", "category"]].tolist() == ["7", "b", "chat"]


def test_directory_of_mixed_files_is_walked(tmp_path):
    (tmp_path / "a.csv").write_text(LONG_CSV)
    sub = tmp_path / "more"
    sub.mkdir()
    (sub / "b.csv").write_text(LONG_CSV.replace("q1", "q3").replace("q2", "q4").replace("2+2", "3+3").replace("above 10", "above 20"))
    ds = import_files([tmp_path], "long")
    assert ds.manifest["counts"]["prompts"] == 4 and len(ds.manifest["sources"]) == 2


def test_pickle_objects_are_not_loaded_by_other_formats(tmp_path):
    f = tmp_path / "x.pkl"
    f.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(DataError, match="unsupported file type"):
        import_files([f], "long")


def test_prices_table_manifest_records_only_used(tmp_path):
    table = PriceTable(_prices(tmp_path, ["a", "b"]))
    assert table.cost("a", 1_000_000, 0) == 1.0
    assert table.used() == {"a": {"input": 1.0, "output": 2.0, "source": f"price file {tmp_path / 'prices.yaml'}"}}
    assert np.allclose(table.cost("b", np.array([0, 1_000_000]), np.array([1_000_000, 0])), [2.0, 1.0])

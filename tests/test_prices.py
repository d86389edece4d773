"""Price tables (files, genai-prices fallback, bundled MMLU-Pro list) and offline token counting."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from routerzoo.data import tokens
from routerzoo.data.importers.mmlu_pro import DEFAULT_PRICES
from routerzoo.data.prices import PriceTable, bundled_price_file, genai_price, load_price_file
from routerzoo.errors import DataError, UserError

SHARED = Path(os.environ.get("ROUTERZOO_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
MMLU_PRO_MODELS = [
    "gemini-1.5-pro-002", "gemini-1.5-flash-002", "DeepSeek-Coder-V2", "Meta-Llama-3_1-70B-Instruct",
    "jamba-1.5-large", "Qwen1.5-72B-Chat", "Meta-Llama-3_1-8B-Instruct", "mathstral-7B",
    "Mixtral-8x7B-Instruct-v0.1", "Phi-3-mini-4k-instruct", "c4ai-command-r-v01", "Mistral-7B-Instruct-v0.2",
    "Yi-6b-Chat", "Qwen1.5-7B-Chat", "Mistral-7B-Instruct-v0.1",
]


def test_bundled_mmlu_pro_prices_cover_all_models_with_provenance():
    raw = yaml.safe_load(bundled_price_file(DEFAULT_PRICES).read_text())
    assert list(raw) == MMLU_PRO_MODELS
    for model, entry in raw.items():
        assert entry["source"] and entry["as_of"], model
        assert entry["input"] > 0 and entry["output"] >= entry["input"], model
    prices = load_price_file(bundled_price_file(DEFAULT_PRICES), "bundled")
    blended = {m: (p.input + p.output) / 2 for m, p in prices.items()}
    strong = ["gemini-1.5-pro-002", "Meta-Llama-3_1-70B-Instruct", "jamba-1.5-large", "Qwen1.5-72B-Chat"]
    small = ["Meta-Llama-3_1-8B-Instruct", "mathstral-7B", "Phi-3-mini-4k-instruct", "Mistral-7B-Instruct-v0.2",
             "Yi-6b-Chat", "Qwen1.5-7B-Chat", "Mistral-7B-Instruct-v0.1"]
    assert min(blended[m] for m in strong) > 2 * max(blended[m] for m in small)


def test_bundled_prices_agree_with_genai_prices_where_it_resolves():
    prices = load_price_file(bundled_price_file(DEFAULT_PRICES))
    for model in ("gemini-1.5-pro-002", "gemini-1.5-flash-002", "Mixtral-8x7B-Instruct-v0.1"):
        g = genai_price(model)
        assert g is not None, model
        assert (g.input, g.output) == (prices[model].input, prices[model].output), model


def test_genai_prices_resolution_and_org_prefix():
    table = PriceTable()
    p = table.get("gpt-4-1106-preview")
    assert (p.input, p.output) == (10.0, 30.0)
    assert p.source.startswith("genai-prices")
    m = table.get("mistralai/Mixtral-8x7B-Instruct-v0.1")
    assert (m.input, m.output) == (0.7, 0.7)
    assert set(table.used()) == {"gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"}
    assert table.cost("gpt-4-1106-preview", 1000, 1000) == pytest.approx(0.04)


def test_unknown_model_asks_for_price_file():
    table = PriceTable(use_genai_prices=False)
    with pytest.raises(UserError) as e:
        table.get("gpt-4-1106-preview")
    assert "'gpt-4-1106-preview'" in str(e.value) and "--prices FILE" in str(e.value)
    with pytest.raises(UserError, match="totally-unknown-model-q"):
        PriceTable().get("totally-unknown-model-q")
    assert "totally-unknown-model-q" not in PriceTable()


def test_price_file_priority_and_name_matching(tmp_path):
    first = tmp_path / "first.yaml"
    first.write_text("Mixtral-8x7B-Instruct-v0.1: {input: 1, output: 1}\n")
    second = tmp_path / "second.json"
    second.write_text(json.dumps({"prices": {"mixtral-8x7b-instruct-v0.1": {"input": 2, "output": 2},
                                             "GPT-4-1106-PREVIEW": {"input": 3, "output": 4}}}))
    table = PriceTable([first, None, second])
    assert table.get("mistralai/Mixtral-8x7B-Instruct-v0.1").input == 1.0  # org prefix ignored, first file wins
    assert table.get("gpt-4-1106-preview").output == 4.0  # a file beats genai-prices; case-insensitive
    assert table.files == [str(first), str(second)]


def test_routerarena_cost_json_key_names(tmp_path):
    f = tmp_path / "cost.json"
    f.write_text(json.dumps({"m": {"input_token_price_per_million": 0.25, "output_token_price_per_million": 1.25}}))
    p = load_price_file(f)["m"]
    assert (p.input, p.output) == (0.25, 1.25)


def test_routerarena_real_cost_file():
    real = SHARED / "routerarena" / "model_cost" / "cost.json"
    if not real.is_file():
        pytest.skip(f"{real} not present")
    prices = load_price_file(real)
    assert len(prices) == 45
    assert prices["claude-3-haiku-20240307"].output == 1.25


@pytest.mark.parametrize("name,content,message,row,field", [
    ("p.yaml", "m: {input: 1}\n", "lacks 'output'", 1, "m.output"),
    ("p.yaml", "a: {input: 1, output: 1}\nm: {input: -1, output: 1}\n", "non-negative", 2, "m.input"),
    ("p.yaml", "m: {input: cheap, output: 1}\n", "must be a number", 1, "m.input"),
    ("p.yaml", "m: {input: 1, output: 1, currency: EUR}\n", "unknown key", 1, "m.currency"),
    ("p.yaml", "m: 0.5\n", "must be a mapping", 1, "m"),
    ("p.yaml", "- just\n- a list\n", "must map model names", None, None),
    ("p.yaml", "m: {input: 1, output: [1\n", "invalid YAML", 2, None),
    ("p.json", '{"m": {"input": 1, "output": ', "invalid JSON", 1, None),
    ("p.yaml", "\n", "empty", None, None),
])
def test_bad_price_files(tmp_path, name, content, message, row, field):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(DataError) as e:
        PriceTable(f)
    assert message in str(e.value)
    assert (e.value.file, e.value.row, e.value.field) == (str(f), row, field)


def test_missing_price_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        PriceTable(tmp_path / "nope.yaml")


# ---------------------------------------------------------------------------------------------
# tokens


def test_count_tokens_known_values_and_empty():
    counts = tokens.count_tokens(["Hello world", "", None, float("nan"), "Hello world"])
    assert counts.dtype == np.int64
    assert counts.tolist() == [2, 0, 0, 0, 2]
    assert tokens.count_tokens([]).tolist() == []


def test_count_tokens_is_cl100k_when_bpe_openai_is_installed():
    if tokens.tokenizer_name() != "cl100k_base (bpe-openai)":
        pytest.skip("bpe-openai not installed: the regex approximation is in use")
    # reference counts from tiktoken's cl100k_base
    assert tokens.count_tokens(["The quick brown fox jumps over the lazy dog."]).tolist() == [10]
    assert tokens.count_tokens(["def f(x):\n    return x ** 2\n"]).tolist() == [11]


def test_approximation_tracks_cl100k():
    texts = [
        "The quick brown fox jumps over the lazy dog.",
        "Typical advertising regulatory bodies suggest, for example that adverts must not: encourage _________.",
        "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins with four.",
        "def is_palindrome(s):\n    cleaned = [c.lower() for c in s if c.isalnum()]\n    return cleaned == cleaned[::-1]",
        "Electroencephalography and magnetoencephalography measure neuronal activity non-invasively.",
    ] * 3
    approx = np.array([tokens.approx_count(t) for t in texts])
    assert tokens.approx_count("Hello world") == 2
    assert (approx > 0).all()
    if tokens.tokenizer_name() != "cl100k_base (bpe-openai)":
        pytest.skip("bpe-openai not installed: no exact counts to compare the approximation with")
    exact = tokens.count_tokens(texts)
    assert abs(approx.sum() / exact.sum() - 1) < 0.15
    assert np.corrcoef(approx, exact)[0, 1] > 0.95


def test_fallback_without_bpe_openai_is_the_documented_approximation(monkeypatch):
    monkeypatch.setattr(tokens, "_backend_tried", True)
    monkeypatch.setattr(tokens, "_backend", None)
    assert tokens.tokenizer_name() == "cl100k_base regex approximation"
    text = "Electroencephalography is fun, isn't it? 12345"
    assert tokens.count_tokens([text, None]).tolist() == [tokens.approx_count(text), 0]

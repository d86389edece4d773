"""`routerzoo eval --prices` prices both sides: the router decides at the new prices and the dataset's
outcomes are repriced from their token counts, so the best single model, the zero router and the
oracle move with them; where the counts are missing it refuses in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from routerzoo.cli import main
from routerzoo.data.matrix import OutcomeMatrix
from routerzoo.data.prices import Price, reprice_outcomes
from routerzoo.errors import UserError

PRICES = {"math-small": {"input": 0.05, "output": 0.05}, "history-small": {"input": 0.05, "output": 0.05},
          "big": {"input": 5.0, "output": 5.0}}


def _outcomes(tokens: bool = True):
    """The topic outcomes with token counts and costs = tokens × PRICES."""
    from conftest import topic_outcomes

    df = topic_outcomes(40)
    rng = np.random.default_rng(1)
    df["input_tokens"] = rng.integers(50, 150, size=len(df))
    df["output_tokens"] = rng.integers(50, 250, size=len(df))
    price = df["model"].map(lambda m: PRICES[m]["input"])
    df["cost"] = (df["input_tokens"] + df["output_tokens"]) * price / 1e6
    if not tokens:
        df = df.drop(columns=["input_tokens", "output_tokens"])
    return df


def test_reprice_outcomes_recomputes_named_models_from_tokens_only():
    m = OutcomeMatrix(["a", "b"], ["x", "y"], ["s", "l"], np.ones((2, 2)), np.array([[1.0, 2.0], [3.0, 4.0]]), [None, None],
                      input_tokens=np.array([[10.0, 1e6], [20.0, 2e6]]), output_tokens=np.array([[0.0, 1e6], [5.0, 0.0]]))
    out = reprice_outcomes(m, {"l": Price(1.0, 3.0, "test"), "not-a-candidate": {"input": 1, "output": 1}})
    assert out.cost[:, 0].tolist() == [1.0, 3.0]  # not named: unchanged
    assert out.cost[:, 1] == pytest.approx([4.0, 2.0])  # 1M in × $1 + 1M out × $3; 2M in × $1
    assert m.cost[0, 1] == 2.0  # the input is left alone
    gap = OutcomeMatrix(["a"], ["x"], ["l"], np.ones((1, 1)), np.ones((1, 1)), [None],
                        input_tokens=np.array([[np.nan]]), output_tokens=np.array([[1.0]]))
    with pytest.raises(UserError, match=r"--prices: cannot reprice the outcomes of 'l': 1 of 1 prompts have no"):
        reprice_outcomes(gap, {"l": {"input": 1.0, "output": 1.0}})
    with pytest.raises(UserError, match="no input/output token counts"):
        reprice_outcomes(OutcomeMatrix(["a"], ["x"], ["l"], np.ones((1, 1)), np.ones((1, 1)), [None]), {"l": PRICES["big"]})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from routerzoo.data.dataset import make_dataset, save_dataset
    from routerzoo.data.splits import SplitSpec
    from routerzoo.routers.kinds.baselines import BestSingleConfig
    from routerzoo.training.train import train_router

    root = tmp_path_factory.mktemp("eval-prices")
    split = SplitSpec(val=0.2, test=0.3, stratify=True)
    data = save_dataset(make_dataset(_outcomes(), name="topics", split=split, prices=PRICES), root / "data")
    bare = save_dataset(make_dataset(_outcomes(tokens=False), name="topics-no-tokens", split=split), root / "bare")
    # a router that reads no prompt keeps the test fast; the repricing is the same for every kind
    result = train_router("best-single", BestSingleConfig(), data, root / "router", progress=False)
    half = root / "half.yaml"
    half.write_text(yaml.safe_dump({"big": {"input": 2.5, "output": 2.5}}))
    return {"root": root, "data": str(data), "bare": str(bare), "router": str(result.router_dir), "half": str(half)}


def _eval(trained, capsys, *extra) -> tuple[int, dict | None, str]:
    out = trained["root"] / f"report-{len(extra)}.json"
    code = main(["eval", trained["router"], "--data", trained["data"], "--json", str(out), *extra])
    captured = capsys.readouterr()
    return code, (json.loads(out.read_text()) if code == 0 else None), captured.out + captured.err


def test_big_model_half_price_moves_best_single_zero_router_and_oracle(trained, capsys):
    code, before, _ = _eval(trained, capsys)
    assert code == 0
    code, after, text = _eval(trained, capsys, "--prices", trained["half"])
    assert code == 0 and "decided and scored at prices from" in text
    assert before["best_single"]["name"] == after["best_single"]["name"] == "big"
    # the best single model is the big one: its cost per prompt halves exactly, its quality stays
    assert after["best_single"]["cost"] == pytest.approx(before["best_single"]["cost"] / 2, rel=1e-9)
    assert after["best_single"]["quality"] == before["best_single"]["quality"]
    singles = {s["name"]: s for s in before["single_models"]}
    for s in after["single_models"]:
        if s["name"] != "big":  # not repriced: unchanged
            assert s["cost"] == pytest.approx(singles[s["name"]]["cost"], rel=1e-12)
    # the oracle's top-quality point and the cost range move with the big model's price
    assert after["oracle"]["cost"] < before["oracle"]["cost"]
    assert after["cost_range"][1] == pytest.approx(before["cost_range"][1] / 2, rel=1e-9)
    assert after["aiq"]["zero_router"] != pytest.approx(before["aiq"]["zero_router"], rel=1e-6)
    # the router now decides at the new price too: its most expensive point is half as costly
    assert max(p["cost"] for p in after["curve"]) == pytest.approx(max(p["cost"] for p in before["curve"]) / 2, rel=1e-6)


def test_missing_token_counts_refuse_in_one_line(trained, capsys):
    code = main(["eval", trained["router"], "--data", trained["bare"], "--prices", trained["half"]])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reprice the outcomes of 'big'" in err and "token counts" in err, err
    assert len(err.strip().splitlines()) == 1
    # without --prices the same data evaluates at its recorded costs
    assert main(["eval", trained["router"], "--data", trained["bare"]]) == 0

"""``routerzoo assign``: batch routing under a budget and capacities, through the real CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import topic_outcomes

from routerzoo.cli import main
from routerzoo.training.train import TrackingConfig, train_router


@pytest.fixture(scope="module")
def knn_router(tmp_path_factory):
    from routerzoo.data.dataset import make_dataset, save_dataset
    from routerzoo.data.splits import SplitSpec

    root = tmp_path_factory.mktemp("assign")
    ds = save_dataset(make_dataset(topic_outcomes(30), name="topics", split=SplitSpec(val=0.2, test=0.2)), root / "topics")
    from routerzoo.routers.kinds.knn import KNNConfig

    train_router("knn", KNNConfig(k=5), ds, root / "knn", tracking=TrackingConfig(enabled=False), progress=False)
    return root / "knn"


def _prompts(tmp_path, fmt: str = "csv", n: int = 40):
    df = topic_outcomes(n // 2, seed=7, prefix="q").drop_duplicates("prompt_id")[["prompt_id", "prompt"]]
    df = df.rename(columns={"prompt_id": "id"})
    path = tmp_path / f"prompts.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_parquet(path, index=False)
    return path, df


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_assign_keeps_budget_and_capacity(knn_router, tmp_path, capsys, fmt):
    path, df = _prompts(tmp_path, fmt)
    out = tmp_path / "out.jsonl"
    # unconstrained, everything would go to `big` (~1e-3 each); this budget affords about a third of that
    budget = 40 * 1e-3 / 3
    rc = main(["assign", str(knn_router), "--prompts", str(path), "--budget", str(budget),
               "--capacity", "math-small=0.3", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    got = pd.read_json(out, lines=True, dtype={"id": str})
    assert got["id"].tolist() == df["id"].tolist()
    assert got["predicted_cost"].sum() <= budget
    assert (got["model"] == "math-small").sum() <= int(0.3 * len(df))
    assert "big" in set(got["model"])  # the budget buys some big calls, not none
    summary = json.loads((tmp_path / "out.jsonl.summary.json").read_text())
    assert summary["predicted_cost"] == pytest.approx(got["predicted_cost"].sum())
    assert summary["budget"] == budget and summary["budget_used"] <= 1
    assert sum(summary["count"].values()) == len(df)
    assert "predicted cost" in capsys.readouterr().out


def test_assign_beats_argmax_at_equal_spend(knn_router, tmp_path):
    """Quality at equal predicted spend: the joint assignment never does worse than the λ-argmax
    decision of the same cost (it is optimal for the predictions)."""
    from routerzoo.assign import assign
    from routerzoo.routers import load_router
    from routerzoo.routers.policies.argmax import decide

    router = load_router(knn_router)
    _, df = _prompts(tmp_path, n=60)
    prompts = df["prompt"].tolist()
    pred = router.predict(prompts)
    rows = np.arange(len(prompts))
    for lam in (30.0, 300.0, 3000.0):
        greedy = decide(pred.quality, pred.cost, lam)
        spend = float(pred.cost[rows, greedy].sum())
        choice, _ = assign(router, prompts, spend)
        assert pred.cost[rows, choice].sum() <= spend + 1e-12
        assert pred.quality[rows, choice].sum() >= pred.quality[rows, greedy].sum() - 1e-9


def test_cost_weight_lowers_spend(knn_router, tmp_path):
    from routerzoo.assign import assign
    from routerzoo.routers import load_router

    router = load_router(knn_router)
    _, df = _prompts(tmp_path)
    prompts = df["prompt"].tolist()
    rows = np.arange(len(prompts))
    free, pred = assign(router, prompts, 1.0)
    frugal, _ = assign(router, prompts, 1.0, cost_weight=1e4)
    assert pred.cost[rows, frugal].sum() < pred.cost[rows, free].sum()


def test_assign_failures_are_one_line(knn_router, tmp_path, capsys):
    path, _ = _prompts(tmp_path)
    out = tmp_path / "o.csv"

    def fails(*extra, prompts=path, match):
        rc = main(["assign", str(knn_router), "--prompts", str(prompts), "--out", str(out), *extra])
        err = capsys.readouterr().err
        assert rc == 2 and match in err and err.count("\n") == 1 and "Traceback" not in err, err

    fails("--budget", "1e-9", match="short by")  # infeasible budget: the shortfall is named
    fails("--budget", "1", "--capacity", "big=0.1", "--capacity", "math-small=0.1", "--capacity", "history-small=0.1",
          match="capacit")
    fails("--budget", "1", "--capacity", "gpt-9=0.5", match="gpt-9")
    fails("--budget", "1", "--capacity", "big=1.5", match="--capacity")
    fails("--budget", "-1", match="--budget")
    assert not out.exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("id,prompt\na,hello\nb,\n")
    fails("--budget", "1", prompts=bad, match="row 2, field 'prompt'")
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n')
    fails("--budget", "1", prompts=dup, match="row 2, field 'id'")
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("text\nhello\n")
    fails("--budget", "1", prompts=nocol, match="no 'prompt' field")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "x"\n')
    fails("--budget", "1", prompts=broken, match=str(broken))
    fails("--budget", "1", prompts=tmp_path / "prompts.txt", match="unknown extension")
    # an existing output is never overwritten unasked
    assert main(["assign", str(knn_router), "--prompts", str(path), "--out", str(out), "--budget", "1"]) == 0
    capsys.readouterr()
    fails("--budget", "1", match="--overwrite")
    assert main(["assign", str(knn_router), "--prompts", str(path), "--out", str(out), "--budget", "1", "--overwrite"]) == 0

"""The README's first command runs this: the whole spine on the bundled sample."""

import json

import pytest


def test_demo_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from routerzoo.demo import run_demo

    result = run_demo(tmp_path / "demo", progress=False)
    out = capsys.readouterr().out
    reports = result["reports"]
    assert set(reports) == {"knn", "mlp", "best-single", "random"}
    for kind, report in reports.items():
        assert report["dataset"]["split"] == "test" and report["n_prompts"] > 300, kind
        assert json.loads((tmp_path / "demo" / "reports" / f"{kind}.json").read_text())["curve"]
    # the zero router is the hull of the single models, which best-single walks exactly
    assert reports["best-single"]["aiq"]["router"] == pytest.approx(reports["best-single"]["aiq"]["zero_router"], abs=1e-3)
    assert reports["knn"]["aiq"]["router"] > reports["random"]["aiq"]["router"]
    assert reports["mlp"]["aiq"]["router"] > reports["random"]["aiq"]["router"]
    assert all(r["aiq"]["oracle"] > r["aiq"]["router"] for r in reports.values())
    png = tmp_path / "demo" / "reports" / "cost_quality.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 30_000
    assert "gap closed" in out and "models:/routerzoo-demo@champion routes" in out
    assert result["champion"]["router"] in ("knn", "mlp") and result["champion"]["version"] == 1
    assert (tmp_path / "demo" / "mlflow.db").is_file()
    # step 5: the champion served over HTTP, answered by the two loopback backends via the openai client
    served = result["served"]
    assert len(served) == 6 and "stopped the server and both backends" in out
    from routerzoo.demo import DEMO_BACKENDS

    assert {a["model"] for a in served} <= set(DEMO_BACKENDS)
    assert all(a["content"] == f"answer from {a['model']}" for a in served)  # the backend named is the one that answered
    cost = {p: sum(a["cost_usd"] for a in served if a["profile"] == p) for p in ("best quality", "thrifty")}
    assert 0 < cost["thrifty"] <= cost["best quality"]

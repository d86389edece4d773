"""Comparing two routers on served traffic (routerzoo/zoo/traffic.py): a request log written by the
server's own writer, and ten-line toy routers whose decisions are known exactly."""

from __future__ import annotations

import numpy as np
import pytest
from test_serving import knn_dir  # noqa: F401  (a session fixture: the kNN router of the topic data)

from routerzoo.errors import UserError
from routerzoo.routers import Prediction
from routerzoo.serving.request_log import RequestLog, RequestLogConfig
from routerzoo.zoo.gate import paired_mean_bootstrap
from routerzoo.zoo.traffic import compare_on_traffic, describe_gate, is_better, read_traffic

MODELS = ["small", "big"]


class Toy:
    """Chooses ``big`` for prompts containing any of ``hard`` words, else ``small``."""

    models = MODELS

    def __init__(self, *hard: str):
        self.hard = hard

    def predict(self, prompts):
        q = np.array([[0.2, 0.9] if any(h in p for h in self.hard) else [0.9, 0.2] for p in prompts])
        return Prediction(q, np.tile([1e-4, 1e-2], (len(prompts), 1)))

    def decide(self, pred):
        return pred.quality.argmax(axis=1)


def truth(prompt: str, model: str) -> float:
    """Users' rewards: math needs the big model, everything else is fine on the small one."""
    return 1.0 if model == "big" or "math" not in prompt else 0.0


def write_log(directory, requests, rewards, prompts="full"):
    """requests: (request id, prompt, router label, model, cost); rewards: (request id, reward)."""
    log = RequestLog(RequestLogConfig(dir=str(directory), prompts=prompts, flush_interval_s=0.01))
    log.start()
    for rid, prompt, router, model, cost in requests:
        log.log({"request_id": rid, "time": 0.0, "text": prompt, "router": router, "chosen": model, "model": model,
                 "cost": cost, "status": 200})
    log.stop()
    log = RequestLog(RequestLogConfig(dir=str(directory), prompts=prompts, flush_interval_s=0.01))
    log.start()
    for rid, reward in rewards:
        log.add_feedback({"request_id": rid, "reward": reward, "source": "client"}).result(10)
    log.stop()


def _traffic(tmp_path, canary: bool):
    """40 math and 40 history prompts routed by the champion (all to small); with ``canary``, the
    challenger (big for math) answered each prompt again; every answer rated."""
    champion, challenger = Toy(), Toy("math")
    requests, rewards = [], []
    for i in range(80):
        prompt = f"{'math' if i % 2 else 'history'} question {i}"
        routers = [("r@1", champion)] + ([("r@2", challenger)] if canary else [])
        for label, router in routers:
            model = MODELS[int(router.decide(router.predict([prompt]))[0])]
            rid = f"{label}-{i}"
            requests.append((rid, prompt, label, model, 1e-4 if model == "small" else 1e-2))
            rewards.append((rid, truth(prompt, model)))
    write_log(tmp_path / "log", requests, rewards)
    return challenger, champion, read_traffic(tmp_path / "log")


def test_a_better_challenger_on_canary_traffic_passes_the_paired_gate(tmp_path):
    challenger, champion, traffic = _traffic(tmp_path, canary=True)
    result = compare_on_traffic(challenger, champion, ("r@2", "r@1"), traffic)
    assert result.n_requests == 160 and result.n_prompts == 80
    assert result.agreement == pytest.approx(0.5)  # they differ on the math half
    assert result.routed == (80, 80)
    assert result.predicted_cost == pytest.approx((0.5 * 1e-4 + 0.5 * 1e-2, 1e-4))
    assert result.realised_cost == pytest.approx((0.5 * 1e-4 + 0.5 * 1e-2, 1e-4))
    assert (result.n_rated, result.n_differ) == (80, 40)
    assert result.gate.candidate == 1.0 and result.gate.incumbent == 0.5
    assert result.gate.ci[0] > 0.3 and is_better(result)
    assert "r@2" in result.table() and "paired CI" in result.table()
    # the other way round, the champion is refused, with the numbers in one line
    back = compare_on_traffic(champion, challenger, ("r@1", "r@2"), traffic)
    assert not is_better(back)
    line = describe_gate(back)
    assert "\n" not in line and "worse by 0.5000" in line and "40 where the choices differ" in line


def test_without_ratings_of_the_challengers_choices_it_is_refused_with_what_to_do(tmp_path):
    challenger, champion, traffic = _traffic(tmp_path, canary=False)
    result = compare_on_traffic(challenger, champion, ("r@2", "r@1"), traffic)
    # rated: only the champion's answers; where both choose small (history) the pair is known, and equal
    assert (result.n_rated, result.n_differ) == (40, 0) and result.routed == (0, 80)
    assert result.realised_cost[0] is None
    assert not is_better(result)
    assert "canary the challenger or label replayed prompts (--labels)" in describe_gate(result)
    # judged labels for the prompts fill what feedback does not cover
    extra = {(f"math question {i}", "big"): 1.0 for i in range(1, 80, 2)}
    result = compare_on_traffic(challenger, champion, ("r@2", "r@1"), traffic, extra)
    assert (result.n_rated, result.n_differ) == (80, 40) and is_better(result)


def test_a_log_without_prompt_texts_is_refused_in_one_line(tmp_path):
    write_log(tmp_path / "off", [("a", "secret text", "r@1", "small", 0.0)], [("a", 1.0)], prompts="off")
    with pytest.raises(UserError, match="prompts: off") as err:
        read_traffic(tmp_path / "off")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="no request log"):
        read_traffic(tmp_path / "nowhere")


def test_paired_mean_bootstrap_is_exactly_zero_for_equal_values_and_checks_shapes():
    v = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    result = paired_mean_bootstrap(v, v.copy())
    assert result.delta == 0 and result.ci == (0.0, 0.0) and not result.better
    with pytest.raises(UserError, match="same prompts"):
        paired_mean_bootstrap(v, v[:3])
    with pytest.raises(UserError, match="--confidence"):
        paired_mean_bootstrap(v, v, confidence=2)


@pytest.fixture(scope="module")
def zoo(knn_dir, tmp_path_factory):  # noqa: F811
    """router/1: the best single model; router/2: test_serving's kNN (a session fixture), both on the topic data."""
    from conftest import topic_outcomes

    from routerzoo.data.dataset import make_dataset, save_dataset
    from routerzoo.routers.kinds.baselines import BestSingleConfig
    from routerzoo.training.train import TrackingConfig, train_router
    from routerzoo.zoo.registry_ops import register

    root = tmp_path_factory.mktemp("traffic-zoo")
    data = save_dataset(make_dataset(topic_outcomes(60), name="topics"), root / "data")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    best = train_router("best-single", BestSingleConfig(), data, root / "v1", tracking=TrackingConfig(enabled=False),
                        progress=False)
    for artifact in (best.router_dir, knn_dir):
        register(str(artifact), "router", tracking_uri=uri)
    return {"uri": uri}


def _zoo(zoo, capsys, *args) -> tuple[int, str, str]:
    from routerzoo.cli import main

    code = main(["zoo", *args, "--tracking-uri", zoo["uri"]])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_zoo_compare_and_gated_promote_on_traffic_from_the_command_line(zoo, tmp_path, capsys):
    """router/1 (best single model) is @champion; router/2 (kNN) is gated on a log of the fixture's prompts."""
    from conftest import topic_outcomes

    df = topic_outcomes(60)  # the zoo fixture's data: every model's outcome on every prompt, given as feedback
    requests = [(f"q{k}", p, "router@1" if m == "big" else None, m, c)
                for k, (p, m, c) in enumerate(zip(df["prompt"], df["model"], df["cost"], strict=True))]
    write_log(tmp_path / "log", requests, [(f"q{k}", q) for k, q in enumerate(df["quality"])])
    assert _zoo(zoo, capsys, "promote", "router/1", "--alias", "champion")[0] == 0
    code, out, err = _zoo(zoo, capsys, "compare", "router/2", "router@champion", "--traffic", str(tmp_path / "log"))
    assert code == 0, err
    assert "120 routed requests, 120 distinct prompts; router@2 (challenger) vs router@1 (champion)" in out, out
    assert "agreement with router@1" in out and "over 120 rated prompts" in out
    gate = ("--alias", "champion", "--if-better-than", "champion", "--traffic", str(tmp_path / "log"))
    code, out, err = _zoo(zoo, capsys, "promote", "router/2", *gate, "--min-improvement", "2")
    assert code == 1 and err.count("\n") == 1, err
    assert "refusing to promote router/2 to @champion: on traffic" in err and "lower bound must exceed +2.0000" in err
    code, out, err = _zoo(zoo, capsys, "promote", "router/2", *gate, "--metric", "gap_closed")
    assert code == 2 and "on --traffic the gate is the paired mean_reward" in err
    code, out, err = _zoo(zoo, capsys, "promote", "router/2", "--alias", "champion", "--traffic", str(tmp_path / "log"))
    assert code == 2 and "add --if-better-than ALIAS" in err

"""``routerzoo train --router auto``: candidates cross-validated, the one-SE choice or a cross-fitted stack."""

from __future__ import annotations

import json

import numpy as np
import pytest

from routerzoo.errors import ConfigError, UserError
from routerzoo.training.auto import AutoConfig, fit_weights, greedy_ensemble, one_se_choice, parse_candidate
from routerzoo.training.cv import CVConfig, CVResult, FoldResult


def _result(name: str, gaps: list[float]) -> CVResult:
    folds = [FoldResult(i, 10, g, 0.5, 0.0) for i, g in enumerate(gaps)]
    return CVResult(name, folds, np.zeros((1, 2)), np.zeros((1, 2)))


def test_one_se_rule_prefers_the_simpler_candidate_within_one_standard_error():
    simple = _result("simple", [0.20, 0.22, 0.18])        # mean 0.20
    best = _result("complex", [0.21, 0.27, 0.18])         # mean 0.22, se ≈ 0.026
    assert one_se_choice([simple, best]).name == "simple"
    far = _result("complex", [0.30, 0.31, 0.29])          # mean 0.30, se ≈ 0.006
    assert one_se_choice([simple, far]).name == "complex"


def test_stack_weights_favour_the_informative_member_and_shrink_toward_it():
    rng = np.random.default_rng(0)
    n = 200
    tq = (rng.random((n, 2)) < np.array([0.5, 0.8])).astype(float)
    good = tq + rng.normal(0, 0.3, tq.shape)        # knows the outcomes
    noise = rng.random(tq.shape)                     # knows nothing
    q = np.stack([noise, good])
    tq[0, 0] = np.nan  # an unobserved outcome is ignored
    w = fit_weights(q, tq, step=0.25, shrinkage=0.0)
    assert w[1] > w[0] and np.isclose(w.sum(), 1) and (w >= 0).all()
    assert np.allclose(fit_weights(q, tq, step=0.25, shrinkage=1.0), [0, 1])


def test_gap_scorer_equals_the_reports_gap_closed():
    from routerzoo.evaluation.report import GapScorer, evaluate_predictions

    rng = np.random.default_rng(1)
    n, m = 300, 4
    tq = (rng.random((n, m)) < np.array([0.3, 0.5, 0.6, 0.8])).astype(float)
    tc = np.broadcast_to([0.1, 0.4, 1.0, 3.0], (n, m)) * rng.uniform(0.5, 1.5, (n, 1))
    scorer = GapScorer(tq, tc)
    for pq in (tq + rng.normal(0, 0.5, tq.shape), np.round(rng.random(tq.shape), 1), np.full(tq.shape, 0.5)):
        pc = tc * rng.uniform(0.8, 1.2, tc.shape)
        want = evaluate_predictions(pq, pc, tq, tc, [f"m{i}" for i in range(m)])["gap_closed"]
        assert scorer(pq, pc) == pytest.approx(want, abs=1e-12)


def test_greedy_ensemble_combines_complementary_members_and_drops_noise():
    """Each informative member knows half the prompts; averaging them knows all; noise adds nothing."""
    rng = np.random.default_rng(0)
    n, m = 400, 3
    tq = (rng.random((n, m)) < 0.5).astype(float)
    tc = np.broadcast_to([1.0, 2.0, 3.0], (n, m)).copy()
    half = np.arange(n) < n // 2
    left = np.where(half[:, None], tq, 0.5)   # right on the first half, no opinion on the second
    right = np.where(half[:, None], 0.5, tq)
    noise = rng.random((n, m))
    q = np.stack([left, noise, right])
    c = np.broadcast_to(tc, q.shape)
    w = greedy_ensemble(q, c, tq, tc, ["a", "b", "c"], size=10)
    assert np.isclose(w.sum(), 1) and w[1] == 0 and w[0] > 0 and w[2] > 0
    # one member alone: all its weight
    assert np.allclose(greedy_ensemble(q[:1], c[:1], tq, tc, ["a", "b", "c"], size=10), [1.0])


@pytest.mark.parametrize("bad, match", [
    (dict(candidates=["nope"]), "unknown router"),
    (dict(candidates=["oracle"]), "cannot be a candidate"),
    (dict(candidates=["knn:k"]), "key=value"),
    (dict(candidates=["knn:k=0"]), "router.k"),
    (dict(time_limit=0), "time_limit"),
    (dict(method="vote"), "method"),
    (dict(ensemble_size=0), "ensemble_size"),
])
def test_bad_auto_settings_are_config_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        AutoConfig(**bad)


def test_candidate_settings_are_typed():
    kind, cfg = parse_candidate("knn:k=40,temperature=0.5")
    assert kind == "knn" and cfg.k == 40 and cfg.temperature == 0.5


def test_auto_writes_the_chosen_kind_with_its_cv_table(topic_dataset, tmp_path):
    from routerzoo.routers import load_router
    from routerzoo.training.train import TrackingConfig, train_router

    config = AutoConfig(candidates=["best-single", "knn:k=20", "sw-elo"], time_limit=120)
    result = train_router("auto", config, topic_dataset, tmp_path / "auto", tracking=TrackingConfig(enabled=False),
                          progress=False, cv=CVConfig(folds=3))
    saved = json.loads((tmp_path / "auto" / "config.json").read_text())
    info = saved["lineage"]["auto"]
    names = [r["candidate"] for r in info["candidates"]]
    assert names[:3] == ["best-single", "knn:k=20", "sw-elo"]
    # 84 train+val prompts: repeated K-fold, 3 fold assignments × 3 folds per candidate
    assert info["repeats"] == 3
    assert all(r["folds"] == 9 and r["repeats"] == 3 and r["gap_closed_mean"] is not None for r in info["candidates"])
    n = saved["lineage"]["cv"]["n_prompts"]
    assert n == 84 and len(saved["lineage"]["cv"]["per_fold"]) == 9
    assert saved["kind"] in ("knn", "sw-elo", "stack") and saved["kind"] == result.router.kind
    assert info["method"] in ("best-cv", "ensemble")
    if saved["kind"] == "stack":  # an ensemble of the embedding candidates (best-single is not one)
        assert set(info["weights"]) <= {"knn:k=20", "sw-elo"} and len(info["weights"]) == 2
        assert np.isclose(sum(info["weights"].values()), 1.0)
    else:
        assert info["chosen"] in names[1:3]
    assert saved["lineage"]["cv"]["candidate"] == info["chosen"]
    assert load_router(tmp_path / "auto").route(["Solve for x: 3x + 1 = 7."])[0] in saved["models"]


def test_a_candidate_that_fails_is_left_out_named_and_the_others_still_choose(topic_dataset, tmp_path, monkeypatch,
                                                                               capsys):
    from routerzoo.routers.kinds import sw_elo
    from routerzoo.training.train import TrackingConfig, train_router

    def broken(config, ctx):
        raise RuntimeError("singular matrix")

    monkeypatch.setattr(sw_elo, "fit_sw_elo", broken)
    config = AutoConfig(candidates=["knn:k=20", "sw-elo"], time_limit=120)
    result = train_router("auto", config, topic_dataset, tmp_path / "auto", tracking=TrackingConfig(enabled=False),
                          progress=False, cv=CVConfig(folds=3))
    assert result.router.kind == "knn" and result.auto["chosen"] == "knn:k=20"
    row = next(r for r in result.auto["candidates"] if r["candidate"] == "sw-elo")
    assert row["skipped"] == "failed: RuntimeError: singular matrix"
    assert "candidate sw-elo failed: RuntimeError: singular matrix; left out" in capsys.readouterr().err


def test_auto_out_of_time_is_one_line(topic_dataset, tmp_path):
    from routerzoo.training.train import TrackingConfig, train_router

    with pytest.raises(UserError, match="time_limit") as exc:
        train_router("auto", AutoConfig(candidates=["knn:k=20"], time_limit=1e-6), topic_dataset, tmp_path / "a",
                     tracking=TrackingConfig(enabled=False), progress=False, cv=CVConfig(folds=3))
    assert "\n" not in str(exc.value)


def test_auto_cli_prints_the_table(topic_dataset, tmp_path, capsys):
    from routerzoo.cli import main

    out = tmp_path / "auto-cli"
    assert main(["train", "--router", "auto", "--data", str(topic_dataset), "--out", str(out), "--cv.folds", "3",
                 "--auto.candidates", '["best-single", "knn:k=20"]', "--auto.method", "select",
                 "--tracking.enabled", "false"]) == 0
    captured = capsys.readouterr()
    text = captured.out
    assert "auto: 3-fold CV × 3 fold assignments of 2 candidates" in text and "* knn:k=20" in text
    # stderr is not a terminal here: progress comes as lines, each candidate's CV as it finishes
    assert "auto: knn:k=20, repeat 3/3: CV gap closed" in captured.err and "auto: refitting knn:k=20" in captured.err
    assert main(["train", "--router", "auto", "--data", str(topic_dataset), "--out", str(tmp_path / "b"),
                 "--cv.folds", "0", "--tracking.enabled", "false"]) != 0
    assert "--cv.folds 3 or more" in capsys.readouterr().err


@pytest.fixture(scope="module")
def small_user_dataset(tmp_path_factory):
    """320 prompts × 3 models, noisy per prompt: a 32-prompt validation split is all a user has."""
    from conftest import topic_outcomes

    from routerzoo.data.dataset import make_dataset, save_dataset
    from routerzoo.data.splits import SplitSpec

    ds = make_dataset(topic_outcomes(n_per_topic=160, seed=3), name="small",
                      split=SplitSpec(val=0.1, test=0.2, stratify=True))
    return save_dataset(ds, tmp_path_factory.mktemp("small") / "small")


def test_small_data_chooses_k_by_cv_and_states_the_error_bars(small_user_dataset, tmp_path):
    """The val split has 32 prompts; the choice of k must come from CV over all 256 train+val prompts."""
    from routerzoo.data.dataset import load_dataset
    from routerzoo.training.train import TrackingConfig, train_router

    assert len(load_dataset(small_user_dataset).outcome_matrix("val")) == 32
    config = AutoConfig(candidates=["knn:k=80", "knn:k=40", "knn:k=10", "knn:k=3"], method="select", time_limit=120)
    result = train_router("auto", config, small_user_dataset, tmp_path / "auto", tracking=TrackingConfig(enabled=False),
                          progress=False, cv=CVConfig(folds=5))
    rows = {r["candidate"]: r for r in result.auto["candidates"]}
    means = {name: r["gap_closed_mean"] for name, r in rows.items()}
    best = max(means, key=means.get)
    chosen = result.auto["chosen"]
    # the one-SE rule over the CV table, not the validation split, made the choice
    assert means[chosen] >= means[best] - rows[best]["gap_closed_se"]
    assert result.router.config.k == int(chosen.split("=")[1])
    assert chosen != "knn:k=3"  # three neighbours of noisy outcomes: never within one SE of the best here
    assert any("uncertain by about" in line for line in result.notes)


def test_repeated_folds_pool_scores_stack_predictions_and_keep_the_standard_error_honest():
    from routerzoo.training.cv import merge_repeats

    a = CVResult("knn", [FoldResult(f, 10, g, 0.5, 1.0) for f, g in enumerate([0.1, 0.2, 0.3])], np.zeros((4, 2)), np.zeros((4, 2)))
    b = CVResult("knn", [FoldResult(f, 10, g, 0.5, 1.0) for f, g in enumerate([0.1, 0.2, 0.3])], np.ones((4, 2)), np.ones((4, 2)))
    m = merge_repeats([a, b])
    assert m.repeats == 2 and [f.fold for f in m.folds] == [0, 1, 2, 3, 4, 5]
    assert m.oof_quality.shape == (8, 2) and (m.oof_quality[4:] == 1).all()
    # six scores of the same three folds' prompts: the error is sd / sqrt(3), not sd / sqrt(6)
    assert m.se() == pytest.approx(m.sd() / np.sqrt(3))
    first = m.first_repeat()
    assert first.oof_quality.shape == (4, 2) and (first.oof_quality == 0).all() and len(first.folds) == 6
    assert m.folds_text() == "2×3 folds"


def test_cross_fitting_over_repeats_never_sees_the_held_out_prompts():
    """Weights for a held-out fold are fitted on the other folds of the same fold assignment only: the
    held-out prompts' rows from other assignments would carry their outcomes into the fit."""
    from types import SimpleNamespace

    from routerzoo.training.auto import cross_fitted
    from routerzoo.training.cv import RepeatedFolds

    n, k, m = 30, 3, 2
    rng = np.random.default_rng(0)
    data = SimpleNamespace(quality=rng.random((n, m)), cost=rng.random((n, m)) + 0.1, models=["a", "b"])
    assignments = [SimpleNamespace(k=k, n=n, data=data, fold=rng.permutation(np.arange(n) % k)) for _ in range(2)]
    view = RepeatedFolds(assignments)
    prompt = np.tile(np.arange(n), 2).astype(float)  # each row's prompt id, smuggled in as a "prediction"
    member = CVResult("x", [], np.stack([prompt] * m, axis=1), np.ones((2 * n, m)), repeats=2)
    other = CVResult("y", [], rng.random((2 * n, m)), np.ones((2 * n, m)), repeats=2)
    seen = []

    def fit(q, c, tq, tc):
        seen.append(set(q[0, :, 0].astype(int)))
        return np.array([0.5, 0.5])

    result, _ = cross_fitted([member, other], view, fit, "ens")
    assert len(result.folds) == 2 * k and result.repeats == 2
    for g in range(2 * k):
        r, f = divmod(g, k)
        held_prompts = set(np.flatnonzero(assignments[r].fold == f))
        assert not seen[g] & held_prompts, g
        assert seen[g] == set(np.flatnonzero(assignments[r].fold != f))


def test_a_repeat_the_budget_cannot_finish_is_dropped_whole(topic_dataset, tmp_path, monkeypatch):
    """Repeats run one fold assignment at a time for every candidate; when the time limit stops a
    later one, it is dropped for all candidates (their out-of-fold rows must line up), and said."""
    from types import SimpleNamespace

    from routerzoo.training import auto
    from routerzoo.training.train import TrackingConfig, train_router

    clock = {"now": 0.0}
    from routerzoo.training import cv

    fake = SimpleNamespace(monotonic=lambda: clock["now"], perf_counter=auto.time.perf_counter)
    monkeypatch.setattr(auto, "time", fake)
    monkeypatch.setattr(cv, "time", fake)
    real = auto.cross_validate

    def slow(*args, **kwargs):  # every candidate's CV "takes" 20 s of the 100 s limit (search: 70 s)
        result = real(*args, **kwargs)
        clock["now"] += 20.0
        return result

    monkeypatch.setattr(auto, "cross_validate", slow)
    config = AutoConfig(candidates=["knn:k=20", "sw-elo"], time_limit=100, repeats=3)
    result = train_router("auto", config, topic_dataset, tmp_path / "auto", tracking=TrackingConfig(enabled=False),
                          progress=False, cv=CVConfig(folds=3))
    info = result.auto
    assert info["repeats_planned"] == 3 and info["repeats"] == 2
    assert all(r["repeats"] == 2 and r["folds"] == 6 for r in info["candidates"] if "skipped" not in r)

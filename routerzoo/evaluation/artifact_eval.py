"""``routerzoo eval`` for what is not a router: deferral scorers, MDP routers and cascades.

A router is evaluated on its λ sweep (``runner.py``). The other artifacts a user trains or
calibrates are told apart here and evaluated with the code that already measures them:

- a **deferral scorer** artifact (``config.json`` with ``role: deferral``): AUROC of answer
  correctness and the deferral curve's AUC to the next model
  (:func:`routerzoo.training.train_deferral.evaluate_deferral`, the numbers ``routerzoo train``
  prints for val / test);
- an **MDP router** artifact (``role: policy``, ``kind: mdp``): run once through the offline client
  (:func:`~routerzoo.evaluation.sequential.run_offline`), its point reported with
  :func:`~routerzoo.evaluation.sequential.evaluate_sequential`;
- a **cascade**: the YAML ``routerzoo calibrate-cascade --out`` writes (``mode: cascade`` and a
  ``cascade:`` section, as in a serve config) or a bare ``chain`` / ``thresholds`` / ``scorer``
  mapping. Its configured thresholds give the operating point; the cascade's curve over one shared
  threshold (:func:`~routerzoo.evaluation.sequential.cascade_curve`) gives AIQ and cascade AUC. A
  ``cascade.policy`` naming an MDP router evaluates that router.

What a scorer reads must be in the table: scorers of token logprobs refuse a table without them,
the (prompt, response) scorer one without responses, answer consistency one without k sampled
answers per response (a table holds one); the error names the dataset, split and model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from routerzoo.errors import UserError

__all__ = ["artifact_role", "load_cascade_spec", "evaluate_scorer", "evaluate_policy", "evaluate_cascade", "eval_command"]

#: what each deferral kind cannot do without ("token_logprobs", "responses" or "samples");
#: posthoc-deferral reads logprobs when present and the next model's predicted success always
_NEEDS = {"token-quantile": "token_logprobs", "logprob-confidence": "token_logprobs",
          "prompt-response": "responses", "consistency": "samples"}


def artifact_role(path: str | Path) -> str:
    """``"router"``, ``"deferral"``, ``"mdp"`` or ``"cascade"`` for an eval argument.

    A directory is classified by its ``config.json``'s ``role`` / ``kind`` (routers carry no role);
    a YAML / JSON file is a cascade spec. Anything else (MLflow URIs included) is left to the router
    loader, which names the problem.
    """
    p = Path(path)
    if str(path).startswith(("models:/", "runs:/")) or not p.exists():
        return "router"
    if p.is_file():
        return "cascade"
    cfg = p / "config.json"
    try:
        doc = json.loads(cfg.read_text()) if cfg.is_file() else {}
    except (OSError, ValueError):
        return "router"  # the router loader reports the broken file
    role = doc.get("role") if isinstance(doc, dict) else None
    if role == "deferral":
        return "deferral"
    if role == "policy":
        if doc.get("kind") != "mdp":
            raise UserError(f"{cfg}: policy kind {doc.get('kind')!r} has no offline evaluation; "
                            "`routerzoo eval` evaluates routers, deferral scorers, MDP routers and cascades")
        return "mdp"
    return "router"


def load_cascade_spec(path: str | Path):
    """The :class:`~routerzoo.serving.cascade_config.CascadeServeConfig` in a YAML / JSON file.

    Accepts ``calibrate-cascade --out`` output or a serve config (``cascade:`` section) and a bare
    mapping of the section's fields. Errors name the file.
    """
    import yaml

    from routerzoo.routers.typed_config import config_from_dict
    from routerzoo.serving.cascade_config import CascadeServeConfig

    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{p}: cannot read a cascade spec ({exc})") from None
    if isinstance(doc, dict) and doc.get("mode", "cascade") != "cascade":
        raise UserError(f"{p}: mode is {doc.get('mode')!r}; `routerzoo eval` of a file evaluates `mode: cascade` "
                        "(evaluate a router by its artifact directory)")
    if isinstance(doc, dict) and "cascade" in doc:
        doc = doc["cascade"]
    if not isinstance(doc, dict) or not (doc.get("chain") or doc.get("policy")):
        raise UserError(f"{p}: not a cascade spec (expected `cascade:` with `chain:` and `scorer:`, as "
                        "`routerzoo calibrate-cascade --out` writes, or `policy:` naming an MDP router)")
    return config_from_dict(CascadeServeConfig, doc, f"{p}: cascade")


def _check_inputs(scorer, matrix, model: str, where: str) -> None:
    """One clear error when the table lacks what the scorer reads for ``model``'s answers."""
    need = _NEEDS.get(scorer.kind, "token_logprobs" if scorer.needs_logprobs and scorer.kind != "posthoc-deferral" else "")
    if not need:
        return
    cols = [matrix.models.index(model)] if model else list(range(len(matrix.models)))
    seen = ~np.isnan(matrix.quality[:, cols])
    table = matrix.token_logprobs if need == "token_logprobs" else matrix.responses
    values = [] if table is None else [table[i, cols[k]] for i, k in zip(*np.nonzero(seen), strict=True)]
    if need == "samples":
        ok = any(isinstance(v, (list, tuple)) and len(v) >= 2 for v in values)
        what = "k sampled responses per answer (it holds one response each)"
    else:
        ok = any(v is not None and len(v) > 0 for v in values)
        what = "token logprobs" if need == "token_logprobs" else "response texts"
    if not ok:
        whose = f"the answers of model {model!r}" if model else "any answer"
        raise UserError(f"{where}: the {scorer.kind!r} scorer needs {what}; the table has none for {whose}")


def evaluate_scorer(scorer, matrix, *, model: str = "", next_model: str = "", where: str = "dataset") -> dict:
    """AUROC and deferral-curve AUC of ``scorer`` on ``model``'s answers in ``matrix``.

    ``model`` defaults to the scorer's ``config.model``, ``next_model`` to its ``config.next_model``;
    on a two-model table either one gives the other. Without a next model only AUROC is reported.

    Returns:
        ``{"kind": "deferral", "scorer", "model", "next_model", "n_answers", "auroc",
        "deferral_auc", "random_auc", "oracle_auc"}`` (missing values None).
    """
    from routerzoo.evaluation.deferral import evaluate_deferral

    models = list(matrix.models)
    model = model or getattr(scorer.config, "model", "") or ""
    next_model = next_model or getattr(scorer.config, "next_model", "") or ""
    if len(models) == 2:
        if model and not next_model and model in models:
            next_model = models[1 - models.index(model)]
        elif next_model and not model and next_model in models:
            model = models[1 - models.index(next_model)]
    for flag, name in (("--model", model), ("--next-model", next_model)):
        if name and name not in models:
            raise UserError(f"{where}: {flag} {name!r} is not in the dataset; its models: {models}")
    if model and model == next_model:
        raise UserError(f"{where}: --model and --next-model are both {model!r}; defer to another model")
    _check_inputs(scorer, matrix, model, where)
    res = evaluate_deferral(scorer, matrix, model, next_model)
    if not res.get("n_answers"):
        raise UserError(f"{where}: no recorded answer of {model or 'any model'!r} to score")
    out = {"kind": "deferral", "scorer": scorer.kind, "model": model or None, "next_model": next_model or None}
    out |= {k: res.get(k) for k in ("n_answers", "auroc", "deferral_auc", "random_auc", "oracle_auc")}
    return out


def _with_oracle_curve(report: dict, matrix) -> dict:
    """Add the oracle's frontier as a curve (what the cost-quality plot draws) to a sequential report."""
    from routerzoo.evaluation.metrics import oracle_frontier

    sub = matrix.select_models(report["models"])
    full = ~np.isnan(sub.quality).any(axis=1)
    if report.get("oracle") is not None and full.any():
        fc, fq = oracle_frontier(sub.quality[full], sub.cost[full])
        report["oracle"]["curve"] = [{"cost": float(c), "quality": float(q)} for c, q in zip(fc, fq, strict=True)]
    return report


def _point(r: dict, threshold=None) -> dict:
    """A curve point from :func:`run_offline`'s per-prompt arrays (means over the scored prompts)."""
    k = r["known"]
    if not k.any():
        raise UserError("no prompt has an outcome for every call the policy made; nothing to evaluate")
    return {"threshold": threshold, "cost": float(r["cost"][k].mean()), "quality": float(r["quality"][k].mean()),
            "n_scored": int(k.sum()), "n_unscored": int((~k).sum()), "calls_per_prompt": float(r["n_calls"][k].mean())}


def evaluate_policy(policy, matrix) -> dict:
    """A sequential policy (an MDP router) run once on ``matrix``: its operating point and report."""
    from routerzoo.evaluation.sequential import evaluate_sequential, run_offline

    chain = list(getattr(policy.config, "models", None) or matrix.models)
    missing = [m for m in chain if m not in matrix.models]
    if missing:
        raise UserError(f"the policy calls model(s) {missing} that the dataset lacks; its models: {list(matrix.models)}")
    point = _point(run_offline(policy, matrix))
    report = evaluate_sequential([point], matrix, chain)
    return _with_oracle_curve(report | {"policy": policy.kind, "operating_point": point}, matrix)


def evaluate_cascade(scorer, chain: list[str], thresholds: list[float], matrix, n_points: int = 32,
                     where: str = "dataset") -> dict:
    """A cascade at its own thresholds (``operating_point``) and over one shared threshold (the curve)."""
    from routerzoo.evaluation.sequential import cascade_curve, evaluate_sequential, run_offline
    from routerzoo.routers.policies.cascade import CascadeConfig, CascadePolicy

    missing = [m for m in chain if m not in matrix.models]
    if missing:
        raise UserError(f"the cascade's chain model(s) {missing} are not in the dataset; its models: {list(matrix.models)}")
    for model in chain[:-1]:
        _check_inputs(scorer, matrix, model, where)
    policy = CascadePolicy(CascadeConfig(chain=list(chain), thresholds=list(thresholds)), scorer)
    point = _point(run_offline(policy, matrix), list(thresholds))
    report = evaluate_sequential(cascade_curve(scorer, chain, matrix, n_points=n_points), matrix, chain)
    return _with_oracle_curve(report | {"policy": "cascade", "scorer": scorer.kind, "operating_point": point}, matrix)


# -- command line ----------------------------------------------------------------------------------
def eval_command(args, roles: dict[str, str]) -> int:
    """``routerzoo eval`` of one scorer, MDP router or cascade (``roles``: argument -> its role)."""
    from routerzoo.data.dataset import load_dataset

    if len(roles) != 1:
        raise UserError("deferral scorers, MDP routers and cascades are evaluated one at a time; "
                        f"got {len(roles)} arguments ({', '.join(roles)})")
    (source, role), = roles.items()
    for flag, value in (("--strong/--weak", args.strong or args.weak), ("--prices", args.prices),
                        ("--bootstrap", args.bootstrap)):
        if value:
            raise UserError(f"{flag} applies to routers; {source} is a {role if role != 'mdp' else 'MDP router'}")
    if role != "deferral" and (args.model or args.next_model):
        raise UserError(f"--model / --next-model apply to deferral scorers; {source} is a {role}")
    if role == "deferral" and args.plot:
        raise UserError(f"--plot draws cost-quality curves; {source} is a deferral scorer (see its deferral AUC)")
    dataset = load_dataset(args.data)
    matrix = dataset.outcome_matrix(args.split)
    where = f"{dataset.name}[{args.split}]"
    if len(matrix) == 0:
        raise UserError(f"{args.data}: split {args.split!r} has no prompts")
    if role == "deferral":
        from routerzoo.routers.deferral_artifact import load_deferral

        report = evaluate_scorer(load_deferral(source), matrix, model=args.model or "", next_model=args.next_model or "",
                                 where=where)
    elif role == "mdp":
        from routerzoo.routers.policies.mdp import load_mdp

        report = evaluate_policy(load_mdp(source), matrix)
    else:
        spec = load_cascade_spec(source)
        if spec.policy:
            from routerzoo.routers.policies.mdp import load_mdp

            report = evaluate_policy(load_mdp(spec.policy), matrix)
        else:
            from routerzoo.routers.deferral_artifact import resolve_deferral

            scorer = resolve_deferral(spec.scorer, spec.scorer_config or None)
            report = evaluate_cascade(scorer, spec.chain, spec.thresholds, matrix, where=where)
    report["source"] = str(source)
    if args.json_out:
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        tmp.replace(out)  # a reader never sees half a report, as for routers
    if args.plot:
        from routerzoo.evaluation.plot import plot_reports

        plot_reports({Path(source).name: report}, args.plot, title=f"{Path(source).name} on {where}")
    _print(report, source, where)
    if args.json_out:
        print(f"report: {args.json_out}")
    if args.plot:
        print(f"plot: {args.plot}")
    return 0


def _f(x, spec: str = ".4f") -> str:
    return "n/a" if x is None else format(x, spec)


def _print(report: dict, source, where: str) -> None:
    if report["kind"] == "deferral":
        r = report
        print(f"deferral scorer {r['scorer']!r} ({source}) on {where}: {r['n_answers']} answers of "
              f"{r['model'] or 'every model'}")
        print(f"AUROC (answer right) {_f(r['auroc'])}")
        if r["next_model"]:
            print(f"deferral curve to {r['next_model']}: AUC {_f(r['deferral_auc'])} "
                  f"(random order {_f(r['random_auc'])}, oracle order {_f(r['oracle_auc'])})")
        else:
            print("deferral curve: give --next-model (the model deferred to)")
        return
    p = report["operating_point"]
    what = "MDP router" if report["policy"] == "mdp" else f"cascade {' -> '.join(report['models'])} ({report['scorer']})"
    print(f"{what} ({source}) on {where}: {p['n_scored']} prompts"
          + (f" ({p['n_unscored']} without an outcome for every call left out)" if p["n_unscored"] else ""))
    th = f" at thresholds {[round(t, 4) for t in p['threshold']]}" if p.get("threshold") else ""
    print(f"mean quality {p['quality']:.4f}, mean summed cost ${p['cost']:.6g}/prompt, "
          f"{p['calls_per_prompt']:.2f} calls/prompt{th}")
    curve = "cascade curve (one shared threshold)" if report["policy"] == "cascade" else "its one point"
    print(f"{curve}: AIQ {_f(report['aiq']['router'])} (single-model hull {_f(report['aiq']['zero_router'])}, "
          f"oracle {_f(report['aiq']['oracle'])}), gap closed {_f(report['gap_closed'], '.3f')}, "
          f"cascade AUC {_f(report['cascade_auc'])}")
    best = report["best_single"]
    print(f"best single model: {best['name']}, quality {best['quality']:.4f} at ${best['cost']:.6f}/prompt")

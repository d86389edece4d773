"""``routerzoo eval`` (and the zoo's compare / promote gate) for every role, not only routers.

A router is evaluated on its λ sweep (``runner.py``). The other artifacts, loaded by the one loader
(:func:`routerzoo.routers.core.loader.load`) and told apart by their declared role and the registry's
``mode`` / ``reads`` (never by kind name), are evaluated with the code that already measures them:

- a **deferral scorer** (role ``deferral``): AUROC of answer correctness and the deferral curve's
  AUC to the next model (:func:`routerzoo.evaluation.deferral.evaluate_deferral`, the numbers
  ``routerzoo train`` prints for val / test);
- a **sequential policy** (role ``policy``, mode ``sequential``: the MDP router, a calibrated
  cascade): run once through the offline client
  (:func:`~routerzoo.evaluation.sequential.run_offline`) for its operating point. A policy with
  per-stage thresholds (a cascade) is also swept over one shared threshold
  (:func:`~routerzoo.evaluation.sequential.cascade_curve`) for AIQ and cascade AUC; one without
  (the MDP router) reports its one point;
- a **cascade spec** file as ``routerzoo calibrate-cascade --out`` wrote it before cascade artifacts
  (``mode: cascade`` and a ``cascade:`` section, as in a serve config) or a bare ``chain`` /
  ``thresholds`` / ``scorer`` mapping: still read, with a note. A ``cascade.policy`` names a
  policy artifact (folder or ``models:/`` URI).

What a scorer reads must be in the table: scorers of token logprobs refuse a table without them,
the (prompt, response) scorer one without responses, answer consistency one without k sampled
answers per response (a table holds one); the error names the dataset, split and model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from routerzoo.data.fsutil import atomic_write_text
from routerzoo.errors import UserError

__all__ = ["artifact_role", "load_cascade_spec", "evaluate_scorer", "evaluate_policy", "evaluate_cascade",
           "evaluate_artifact", "eval_command"]

#: what a scorer's declared inputs (registry ``reads``) need in the table, beyond the prompt
_TABLE_NEEDS = (("logprobs", "token_logprobs"), ("samples", "samples"), ("response", "responses"))


def artifact_role(path: str | Path) -> str:
    """The role of an eval argument: ``"router"``, ``"deferral"``, ``"policy"`` or ``"cascade"`` (a spec file).

    A directory says its role in ``config.json`` (routers written before roles carry none); a YAML
    / JSON file is a cascade spec as ``calibrate-cascade`` wrote it before cascade artifacts. A
    registry version says it in the ``routerzoo.role`` tag ``zoo register`` sets; any other URI is
    loaded by the one loader, which also names a problem. A path that does not exist is left to the
    router loader, which names it.
    """
    from routerzoo.routers.core.loader import is_uri, load, role_of, source_role

    if is_uri(str(path)):
        role = source_role(str(path))
        if role is None:
            from routerzoo.routers.registry import get_kind

            role = get_kind(load(str(path)).kind).role
        return role
    p = Path(path)
    if not p.exists():
        return "router"
    if p.is_file():
        return "cascade"
    return role_of(p) or "router"  # a broken or missing config.json: the router loader reports it


def load_cascade_spec(path: str | Path):
    """The :class:`~routerzoo.serving.cascade_config.CascadeServeConfig` in a YAML / JSON file.

    Accepts ``calibrate-cascade --out`` output or a serve config (``cascade:`` section) and a bare
    mapping of the section's fields. Errors name the file.
    """
    import yaml

    from routerzoo.routers.core.typed_config import config_from_dict
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
    """One clear error when the table lacks what the scorer reads (its registry ``reads``) for ``model``'s answers."""
    from routerzoo.routers.registry import get_kind

    reads = get_kind(scorer.kind, role="deferral").reads
    need = next((column for what, column in _TABLE_NEEDS if what in reads), "")
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


def evaluate_policy(policy, matrix, n_points: int = 32, where: str = "dataset") -> dict:
    """A sequential policy run once on ``matrix`` (its operating point) and its report.

    A policy with per-stage thresholds (a cascade) is also swept over one shared threshold, which
    gives its curve (AIQ, cascade AUC); any other sequential policy reports its one point.
    """
    from routerzoo.evaluation.sequential import cascade_curve, evaluate_sequential, run_offline
    from routerzoo.routers.registry import get_kind

    spec = get_kind(policy.kind, role="policy")
    if spec.mode != "sequential":
        raise UserError(f"policy kind {policy.kind!r} is {spec.mode}: offline evaluation runs sequential policies "
                        "(the MDP router, cascades)")
    chain = list(policy.models) or list(matrix.models)
    missing = [m for m in chain if m not in matrix.models]
    if missing:
        raise UserError(f"the policy calls model(s) {missing} that the dataset lacks; its models: {list(matrix.models)}")
    thresholds = getattr(policy.config, "thresholds", None)
    if policy.scorer is not None:
        for model in chain[:-1] if thresholds is not None else chain:
            _check_inputs(policy.scorer, matrix, model, where)
    point = _point(run_offline(policy, matrix), None if thresholds is None else list(thresholds))
    curve = [point] if thresholds is None else cascade_curve(policy.scorer, chain, matrix, n_points=n_points)
    report = evaluate_sequential(curve, matrix, chain) | {"policy": policy.kind, "operating_point": point,
                                                          "swept": thresholds is not None}
    if policy.scorer is not None:
        report["scorer"] = policy.scorer.kind
    return _with_oracle_curve(report, matrix)


def evaluate_cascade(scorer, chain: list[str], thresholds: list[float], matrix, n_points: int = 32,
                     where: str = "dataset") -> dict:
    """A cascade at its own thresholds (``operating_point``) and over one shared threshold (the curve)."""
    from routerzoo.routers.policies.cascade import CascadeConfig, CascadePolicy

    missing = [m for m in chain if m not in matrix.models]
    if missing:
        raise UserError(f"the cascade's chain model(s) {missing} are not in the dataset; its models: {list(matrix.models)}")
    policy = CascadePolicy(CascadeConfig(chain=list(chain), thresholds=list(thresholds)), scorer)
    return evaluate_policy(policy, matrix, n_points=n_points, where=where)


def evaluate_artifact(obj, dataset, split: str = "test", **scorer_args) -> dict:
    """The report of any loaded artifact on ``dataset``'s ``split``, by its role.

    Routers: :func:`~routerzoo.evaluation.runner.evaluate_router`; deferral scorers:
    :func:`evaluate_scorer` (``scorer_args``: ``model``, ``next_model``); sequential policies:
    :func:`evaluate_policy`. What the zoo's ``compare`` and ``promote --if-better-than`` gate on.
    """
    from routerzoo.routers.core.base import Router
    from routerzoo.routers.deferral.base import DeferralScorer

    if isinstance(obj, Router):
        from routerzoo.evaluation.runner import evaluate_router

        return evaluate_router(obj, dataset, split)
    matrix = dataset.outcome_matrix(split) if dataset.outcomes is not None else None
    where = f"{dataset.name}[{split}]"
    if matrix is None or len(matrix) == 0:
        raise UserError(f"{where}: no benchmark outcomes to evaluate a {type(obj).__name__} on")
    if isinstance(obj, DeferralScorer):
        return evaluate_scorer(obj, matrix, where=where, **scorer_args)
    return evaluate_policy(obj, matrix, where=where) | {"n_prompts": len(matrix)}


# -- command line ----------------------------------------------------------------------------------
def eval_command(args, roles: dict[str, str]) -> int:
    """``routerzoo eval`` of one scorer, MDP router or cascade (``roles``: argument -> its role)."""
    from routerzoo.data.dataset import load_dataset

    if len(roles) != 1:
        raise UserError("deferral scorers and policies (MDP routers, cascades) are evaluated one at a time; "
                        f"got {len(roles)} arguments ({', '.join(roles)})")
    (source, role), = roles.items()
    for flag, value in (("--strong/--weak", args.strong or args.weak), ("--prices", args.prices),
                        ("--bootstrap", args.bootstrap)):
        if value:
            raise UserError(f"{flag} applies to routers; {source} is a {'cascade spec' if role == 'cascade' else role}")
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
        from routerzoo.routers.core.loader import load

        report = evaluate_scorer(load(source, role="deferral"), matrix, model=args.model or "",
                                 next_model=args.next_model or "", where=where)
    elif role == "policy":
        from routerzoo.routers.core.loader import load

        report = evaluate_policy(load(source, role="policy"), matrix, where=where)
    else:
        import sys

        spec = load_cascade_spec(source)
        if spec.policy:
            from routerzoo.routers.core.loader import load

            report = evaluate_policy(load(spec.policy, role="policy"), matrix, where=where)
        else:
            from routerzoo.routers.deferral.artifact import resolve_deferral

            print(f"note: {source} is a cascade spec that points at its scorer; `routerzoo calibrate-cascade --out DIR` "
                  "writes a self-contained, versioned cascade artifact", file=sys.stderr)
            scorer = resolve_deferral(spec.scorer, spec.scorer_config or None)
            report = evaluate_cascade(scorer, spec.chain, spec.thresholds, matrix, where=where)
    report["source"] = str(source)
    if args.json_out:
        atomic_write_text(args.json_out, json.dumps(report, indent=2) + "\n")
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
    what = f"{report['policy']} policy" + (f" {' -> '.join(report['models'])}" if report["swept"] else "") \
        + (f" ({report['scorer']})" if report.get("scorer") else "")
    print(f"{what} ({source}) on {where}: {p['n_scored']} prompts"
          + (f" ({p['n_unscored']} without an outcome for every call left out)" if p["n_unscored"] else ""))
    th = f" at thresholds {[round(t, 4) for t in p['threshold']]}" if p.get("threshold") else ""
    print(f"mean quality {p['quality']:.4f}, mean summed cost ${p['cost']:.6g}/prompt, "
          f"{p['calls_per_prompt']:.2f} calls/prompt{th}")
    curve = "curve (one shared threshold)" if report["swept"] else "its one point"
    print(f"{curve}: AIQ {_f(report['aiq']['router'])} (single-model hull {_f(report['aiq']['zero_router'])}, "
          f"oracle {_f(report['aiq']['oracle'])}), gap closed {_f(report['gap_closed'], '.3f')}, "
          f"cascade AUC {_f(report['cascade_auc'])}")
    best = report["best_single"]
    print(f"best single model: {best['name']}, quality {best['quality']:.4f} at ${best['cost']:.6f}/prompt")

"""A small L2-regularised logistic regression in numpy, for learned deferral scorers.

Features are standardised with the training mean and scale; weights are fitted by Newton's method
(iteratively reweighted least squares), which converges in a handful of steps for the few dozen
features deferral scorers use. Soft labels in [0, 1] are allowed (cross-entropy against them).
"""

from __future__ import annotations

import numpy as np

from routerzoo.errors import UserError


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50) -> dict[str, np.ndarray]:
    """Fit P(y = 1 | x).

    Args:
        x: (n, f) features.
        y: (n,) labels in [0, 1].
        l2: ridge penalty on the standardised weights (not the bias), summed-loss scale.
        iters: most Newton steps.

    Returns:
        ``{"mean": (f,), "scale": (f,), "weight": (f,), "bias": (1,)}`` (float64), what
        :func:`logistic_proba` reads and what a scorer saves.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise UserError(f"logistic regression needs (n, f) features and (n,) labels, got {x.shape} and {y.shape}")
    if x.shape[0] < 2:
        raise UserError(f"a learned deferral scorer needs at least 2 training answers, got {x.shape[0]}")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = np.hstack([(x - mean) / scale, np.ones((x.shape[0], 1))])
    w = np.zeros(z.shape[1])
    pen = np.full(z.shape[1], float(l2))
    pen[-1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -30, 30)))
        grad = z.T @ (p - y) + pen * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(pen + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return {"mean": mean, "scale": scale, "weight": w[:-1].copy(), "bias": w[-1:].copy()}


def logistic_proba(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """(n,) probabilities for (n, f) features under fitted ``params``."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != params["weight"].shape[0]:
        raise UserError(f"expected (n, {params['weight'].shape[0]}) features, got {x.shape}")
    z = ((x - params["mean"]) / params["scale"]) @ params["weight"] + params["bias"][0]
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def check_params(tensors: dict[str, np.ndarray], prefix: str, n_features: int) -> dict[str, np.ndarray]:
    """The ``prefix``-named logistic parameters from saved tensors, shapes checked."""
    out = {}
    for key, shape in (("mean", (n_features,)), ("scale", (n_features,)), ("weight", (n_features,)), ("bias", (1,))):
        name = f"{prefix}{key}"
        if name not in tensors:
            raise KeyError(f"weights lack tensor {name!r}")
        arr = np.asarray(tensors[name], dtype=np.float64)
        if arr.shape != shape:
            raise ValueError(f"tensor {name!r} has shape {arr.shape}, expected {shape}")
        out[key] = arr
    return out

"""Serving: the OpenAI-compatible router server and what a production process needs to route requests.

Kept light: importing this package imports nothing (not FastAPI, not numpy); nothing on the serving
path imports Lightning, training code, pandas or matplotlib. Routers load through the one loader,
:func:`routerzoo.routers.load_router`.

Modules: :mod:`~routerzoo.serving.config` (typed serve config), :mod:`~routerzoo.serving.app`
(``create_app``), :mod:`~routerzoo.serving.batcher` (micro-batching), :mod:`~routerzoo.serving.upstream`
(backends: retries, fallback, cooldown), :mod:`~routerzoo.serving.reload` (hot reload),
:mod:`~routerzoo.serving.cli` (``routerzoo serve``).
"""

__all__ = ["load_serving_router"]


def __getattr__(name: str):
    # lazy, so `import routerzoo.serving.cli` (done by every `routerzoo` command) stays cheap
    if name == "load_serving_router":
        from routerzoo.serving.loader import load_serving_router

        return load_serving_router
    raise AttributeError(f"module 'routerzoo.serving' has no attribute {name!r}")

"""routerzoo: train, evaluate, register and serve LLM routers.

Importing this package is cheap and has no side effects; heavy parts (torch, Lightning, MLflow,
sentence-transformers) are imported by the submodules that need them.
"""

__version__ = "0.2.0"

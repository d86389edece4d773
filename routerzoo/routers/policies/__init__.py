"""Policies: decisions from predictions (batch) or from observed answers (sequential)."""

from routerzoo.routers.policies.base import BatchPolicy, Call, SequentialPolicy, Trace
from routerzoo.routers.policies.clients import Completion, ModelClient, OfflineClient

__all__ = ["BatchPolicy", "Call", "Completion", "ModelClient", "OfflineClient", "SequentialPolicy", "Trace"]

"""Policies: decisions from predictions (batch) or from observed answers (sequential).

Batch: :class:`~routerzoo.routers.policies.argmax.ArgmaxPolicy`,
:class:`~routerzoo.routers.policies.threshold.ThresholdPolicy`,
:class:`~routerzoo.routers.policies.assignment.AssignmentPolicy` (imported on use: scipy).
Sequential: :class:`~routerzoo.routers.policies.cascade.CascadePolicy`.
"""

from routerzoo.routers.policies.base import BatchPolicy, Call, SequentialPolicy, Trace
from routerzoo.routers.policies.clients import Completion, ModelClient, OfflineClient

__all__ = ["BatchPolicy", "Call", "Completion", "ModelClient", "OfflineClient", "SequentialPolicy", "Trace"]

"""Re-export: the fit contract lives beside the router protocol it serves
(:mod:`routerzoo.routers.core.fit_context`), so routers import nothing from ``training/``."""

from routerzoo.routers.core.fit_context import DeferralFitContext, FeatureConfig, FitContext

__all__ = ["FeatureConfig", "FitContext", "DeferralFitContext"]

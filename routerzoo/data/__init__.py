"""Canonical routing data: benchmark outcomes and preference pairs, importers, splits, embeddings."""

from routerzoo.data.dataset import RoutingDataset, load_dataset, save_dataset
from routerzoo.data.schema import OUTCOME_COLUMNS, PREFERENCE_COLUMNS

__all__ = ["OUTCOME_COLUMNS", "PREFERENCE_COLUMNS", "RoutingDataset", "load_dataset", "save_dataset"]

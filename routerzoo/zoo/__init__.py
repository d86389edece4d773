"""The model zoo: MLflow tracking, registry and lineage for routers."""

"""Training: typed configs and fit functions per router kind, Lightning modules, the train entry point."""

"""Deferral scorers for cascades: is this answer good enough, or should the cascade escalate? One
file a kind, each named by one line of :mod:`routerzoo.routers.registry`."""

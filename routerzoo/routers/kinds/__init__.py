"""Router kinds: one file a kind (its typed config, its router class, its fit function where that
needs no Lightning), each named by one line of :mod:`routerzoo.routers.registry`."""

"""The protocol every kind of every role implements: the router contract, the artifact format and its
one loader, typed configs, the fit context, and the cost side shared by all routers."""

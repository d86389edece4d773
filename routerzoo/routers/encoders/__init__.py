"""Prompt embeddings shared by every role: the serving encoder and its caches, its weight fingerprint,
encoders shipped on PyPI, and the one lazy encoder that kinds embed through."""

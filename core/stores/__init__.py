"""Checkpoint stores: the models, the algorithm every store shares (base.py), the scheme
registry, URLs, and the stores that need no cloud SDK (the cloud ones live in handlers/).
docs/stores/README.md walks through the layout."""

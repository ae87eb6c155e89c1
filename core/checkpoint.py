"""Checkpoint stores as the rest of the relay uses them: the models, the protocol, ``open_store``.

The code lives in core/stores/: models.py (what a store keeps and the ``CheckpointStore``
protocol), base.py (the lease, fencing, version and history algorithm, once), registry.py (which
store serves which URL scheme), sqlite.py (the embedded store), until.py (``LeasesUntil``). The
cloud stores live with their handlers (handlers/<cloud>/checkpoint_store.py).
"""

from __future__ import annotations

from core.stores.models import (
    HISTORY_LIMIT,
    Checkpoint,
    CheckpointStore,
    Clock,
    ClosingStore,
    Lease,
    Position,
    SliceRecord,
    utcnow,
)
from core.stores.registry import (
    StoreFactory,
    known_schemes,
    open_store,
    register_store,
    store_scheme,
)
from core.stores.until import MIN_LEASE_SECONDS, LeasesUntil

__all__ = [
    "HISTORY_LIMIT",
    "MIN_LEASE_SECONDS",
    "Checkpoint",
    "CheckpointStore",
    "Clock",
    "ClosingStore",
    "Lease",
    "LeasesUntil",
    "Position",
    "SliceRecord",
    "StoreFactory",
    "known_schemes",
    "open_store",
    "register_store",
    "store_scheme",
    "utcnow",
]

"""CPython's garbage collector, set up once per process for copying.

A slice allocates a few small containers per record (the record, its op, tuples for the
index), most freed at once by reference counting. CPython's defaults still run a young
collection every 700 container allocations, and now and then a full one that walks every
object the process holds, most of them what its imports made (grpc, protobuf, pydantic's
models): ~12% of the relay's CPU per event (docs/benchmarks.md, "The garbage collector").
`gc.freeze()` moves what exists when the first slice starts into the permanent generation,
which no collection walks, and a larger young threshold makes collections rarer. Cyclic
garbage made later is still collected. At exit, the interpreter's last collections would walk
everything made since, once per process: ~0.2 s of CPU after a 64-writer run, 8% of the CPU of
the benchmark's 30,000-event runs (docs/benchmarks.md). That is frozen too, as the exit begins.
"""

from __future__ import annotations

import atexit
import gc
import threading

YOUNG_THRESHOLD = 50_000  # allocations between young collections (CPython's default: 700)
_lock = threading.Lock()
_done = False


def tune_once() -> None:
    """Freeze the start-up heap and raise the young threshold, the first time only: a frozen
    object is never collected, so what later slices leave behind must stay collectable."""
    global _done
    with _lock:
        if _done:
            return
        _done = True
        gc.freeze()
        atexit.register(gc.freeze)  # runs before the interpreter's own exit collections
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(YOUNG_THRESHOLD, older, oldest)

"""What earlier slices of this process learned about target streams, so the next slice need
not read each stream's tail again before writing to it.

Why a stale entry is harmless: every append carries the exact expected revision it was
computed from. If anything wrote to the stream since (a crash replay, an invocation that took
the job over, a target restored from a backup), the server refuses the append as a wrong
expected revision and the writer re-reads the stream before going on (core/engine/writer.py),
exactly as it does for a state it read itself. So an entry can be wrong only at the cost of one
refused append; it can never make an append land in the wrong place.

The cache is bounded (least recently used first out) by the slice budget: as many streams as a
slice may read events (about 250 bytes each; 20,000 by default, ~5 MB), so it holds at least
what the last slice touched, and its memory does not grow with the number of streams past
that (docs/benchmarks.md measures peak RSS at 100k and 1M events). It is emptied whenever a
slice fails: an append whose outcome is unknown leaves nothing behind.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

DEFAULT_CAPACITY = 20_000  # the default slice budget's events


@dataclass(frozen=True, slots=True)
class KnownState:
    revision: int  # the target stream's last revision (NO_STREAM if none)
    marker: int  # source position at or before which the stream's records are on the target
    soft_deleted: bool
    meta_synced: bool = True  # False: assumed, the metadata stream never read


class KnownStreams:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._states: OrderedDict[str, KnownState] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._states)

    def get(self, stream: str) -> KnownState | None:
        with self._lock:
            state = self._states.get(stream)
            if state is not None:
                self._states.move_to_end(stream)
            return state

    def learn(self, states: dict[str, KnownState], forgotten: set[str]) -> None:
        """After a slice that succeeded: what it ended with, and the streams whose revisions
        it no longer knows (a delete, a metadata change)."""
        with self._lock:
            for stream in forgotten:
                self._states.pop(stream, None)
            for stream, state in states.items():
                self._states[stream] = state
                self._states.move_to_end(stream)
            while len(self._states) > self.capacity:
                self._states.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._states.clear()


_BY_JOB: dict[tuple[str, str], KnownStreams] = {}
_BY_JOB_LOCK = threading.Lock()


def for_job(job_id: str, target: str, capacity: int = DEFAULT_CAPACITY) -> KnownStreams:
    """The process's cache for one job and target (a warm function container keeps it from
    one invocation to the next), holding at most `capacity` streams."""
    with _BY_JOB_LOCK:
        key = (job_id, target)
        if key not in _BY_JOB:
            if len(_BY_JOB) >= 8:
                _BY_JOB.pop(next(iter(_BY_JOB)))
            _BY_JOB[key] = KnownStreams(capacity)
        known = _BY_JOB[key]
        known.capacity = capacity
        return known

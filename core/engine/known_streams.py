"""What earlier slices of this process learned about target streams, so the next slice need
not read each stream's tail again before writing to it.

Why a stale entry is harmless: every append carries the exact expected revision it was
computed from. If anything wrote to the stream since (a crash replay, an invocation that took
the job over, a target restored from a backup), the server refuses the append as a wrong
expected revision and the writer re-reads the stream before going on (core/engine/writer.py),
exactly as it does for a state it read itself. So an entry can be wrong only at the cost of one
refused append; it can never make an append land in the wrong place.

The cache is bounded (least recently used first out) at `DEFAULT_CAPACITY` streams, or the
slice budget's events if more: it holds at least what the last slice touched, and its memory
does not grow with the number of streams past that (docs/benchmarks.md measures peak RSS at
100k and 1M events). The bound is not the slice budget alone: a stream that comes back after
the cache let it go costs a `sync` (its tail, its metadata stream and the source record its
last event came from: three reads, ~2 ms of CPU), and with 100,000 streams and a 20,000-stream
cache a fifth of a realistic history's bursts paid it (+70 s of CPU per million events). An
entry is a stream name and one integer (~140 bytes with the name; 100,000 streams ~14 MB).
It is emptied whenever a slice fails: an append whose outcome is unknown leaves nothing behind.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

DEFAULT_CAPACITY = 100_000  # streams (~14 MB); the slice budget's events if more
_OFFSET = 8  # revisions and markers as stored: >= -8 (NO_STREAM, -1 markers) made >= 0


@dataclass(frozen=True, slots=True)
class KnownState:
    revision: int  # the target stream's last revision (NO_STREAM if none)
    marker: int  # source position at or before which the stream's records are on the target
    soft_deleted: bool
    meta_synced: bool = True  # False: assumed, the metadata stream never read


def _pack(state: KnownState) -> int | KnownState:
    """One integer for the state (a dict value of ~40 bytes, not a ~100-byte object); the
    state itself when a field is outside what the packing holds."""
    revision, marker = state.revision + _OFFSET, state.marker + _OFFSET
    if revision < 0 or marker < 0:
        return state
    return (marker << 66) | (revision << 2) | (state.soft_deleted << 1) | state.meta_synced


def _unpack(value: int | KnownState) -> KnownState:
    if isinstance(value, KnownState):
        return value
    revision = ((value >> 2) & ((1 << 64) - 1)) - _OFFSET
    return KnownState(revision, (value >> 66) - _OFFSET, bool(value & 2), bool(value & 1))


class KnownStreams:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        # Oldest use first (a plain dict keeps insertion order; a use moves a stream last).
        self._states: dict[str, int | KnownState] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._states)

    def get(self, stream: str) -> KnownState | None:
        with self._lock:
            value = self._states.pop(stream, None)
            if value is None:
                return None
            self._states[stream] = value
            return _unpack(value)

    def learn(self, states: dict[str, KnownState], forgotten: set[str]) -> None:
        """After a slice that succeeded: what it ended with, and the streams whose revisions
        it no longer knows (a delete, a metadata change)."""
        with self._lock:
            kept = self._states
            for stream in forgotten:
                kept.pop(stream, None)
            for stream, state in states.items():
                kept.pop(stream, None)
                kept[stream] = _pack(state)
            excess = len(kept) - self.capacity
            if excess > 0:
                for stream in list(itertools.islice(kept, excess)):
                    del kept[stream]

    def clear(self) -> None:
        with self._lock:
            self._states.clear()


_BY_JOB: dict[tuple[str, str], KnownStreams] = {}
_BY_JOB_LOCK = threading.Lock()


def for_job(job_id: str, target: str, capacity: int = DEFAULT_CAPACITY) -> KnownStreams:
    """The process's cache for one job and target (a warm function container keeps it from
    one invocation to the next), holding at most `capacity` (the slice budget's events) or
    `DEFAULT_CAPACITY` streams, whichever is more."""
    capacity = max(capacity, DEFAULT_CAPACITY)
    with _BY_JOB_LOCK:
        key = (job_id, target)
        if key not in _BY_JOB:
            if len(_BY_JOB) >= 8:
                _BY_JOB.pop(next(iter(_BY_JOB)))
            _BY_JOB[key] = KnownStreams(capacity)
        known = _BY_JOB[key]
        known.capacity = capacity
        return known

"""Fault injection: latency, UNAVAILABLE, deadline exceeded, not-leader, reset mid-read.

Set at start (`FaultConfig`) or at run time (`FaultInjector.update(...)`), deterministic for a
given seed. Each fault names the gRPC methods it applies to (empty = every method), e.g.
`methods={"Append", "BatchAppend"}`.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field, fields, replace

import grpc

from esdb_emulator.headers import HTTP_500

# The real server's default maximum append size (ClusterVNodeOptions.MaxAppendSize).
DEFAULT_MAX_APPEND_SIZE = 1_048_576


@dataclass(frozen=True)
class FaultConfig:
    latency_ms: float = 0.0  # added to every matching call
    jitter_ms: float = 0.0  # plus a uniform random 0..jitter_ms
    unavailable_rate: float = 0.0  # fraction of matching calls answered UNAVAILABLE
    unavailable_next: int = 0  # the next N matching calls answer UNAVAILABLE
    deadline_rate: float = 0.0
    deadline_next: int = 0  # the next N matching calls answer DEADLINE_EXCEEDED
    not_leader_next: int = 0  # the next N matching calls answer "Leader info available"
    # The next N matching calls end as Kestrel ends one whose trailer it refused (headers.py);
    # before the other `_next` faults (with deadline_next: a 500, then deadlines).
    http_500_next: int = 0
    reset_read_after: int | None = None  # reads are reset after this many events ...
    reset_reads_next: int = 0  # ... for the next N reads (0 with reset_read_after = every read)
    max_append_size: int = DEFAULT_MAX_APPEND_SIZE
    methods: frozenset[str] = field(default_factory=frozenset)
    seed: int | None = None


class FaultInjector:
    """Thread-safe holder of the current FaultConfig and its counters."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._config = config or FaultConfig()
        self._random = random.Random(self._config.seed)
        self.injected: dict[str, int] = {}
        self.calls: dict[str, int] = {}  # calls seen per method (a test waits for one in flight)

    @property
    def config(self) -> FaultConfig:
        with self._lock:
            return self._config

    def update(self, **changes: object) -> FaultConfig:
        """Change faults at run time, e.g. `update(unavailable_next=3, methods={"Append"})`."""
        known = {f.name for f in fields(FaultConfig)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault setting(s) {sorted(unknown)}; known: {sorted(known)}")
        if "methods" in changes:
            changes["methods"] = frozenset(changes["methods"] or ())  # type: ignore[arg-type]
        with self._lock:
            self._config = replace(self._config, **changes)  # type: ignore[arg-type]
            if "seed" in changes:
                self._random = random.Random(self._config.seed)
            return self._config

    def reset(self) -> None:
        with self._lock:
            self._config = FaultConfig(seed=self._config.seed)
            self.injected.clear()

    def _count(self, kind: str) -> None:
        self.injected[kind] = self.injected.get(kind, 0) + 1

    def count(self, kind: str) -> None:
        with self._lock:
            self._count(kind)

    def _applies(self, method: str) -> bool:
        return not self._config.methods or method in self._config.methods

    def before_call(
        self, method: str, context: grpc.ServicerContext, leader: tuple[str, int]
    ) -> None:
        """Sleep and/or abort the call as configured. Called first in every handler."""
        with self._lock:
            self.calls[method] = self.calls.get(method, 0) + 1
            if not self._applies(method):
                return
            c = self._config
            delay = c.latency_ms + (self._random.uniform(0, c.jitter_ms) if c.jitter_ms else 0.0)
            outcome = None
            if c.http_500_next > 0:
                self._config = replace(c, http_500_next=c.http_500_next - 1)
                outcome = "http_500"
            elif c.unavailable_next > 0:
                self._config = replace(c, unavailable_next=c.unavailable_next - 1)
                outcome = "unavailable"
            elif c.deadline_next > 0:
                self._config = replace(c, deadline_next=c.deadline_next - 1)
                outcome = "deadline"
            elif c.not_leader_next > 0:
                self._config = replace(c, not_leader_next=c.not_leader_next - 1)
                outcome = "not_leader"
            elif c.unavailable_rate and self._random.random() < c.unavailable_rate:
                outcome = "unavailable"
            elif c.deadline_rate and self._random.random() < c.deadline_rate:
                outcome = "deadline"
            if outcome:
                self._count(outcome)
        if delay > 0:
            time.sleep(delay / 1000.0)
        if outcome == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, "Server Is Not Ready")
        elif outcome == "deadline":
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        elif outcome == "http_500":
            context.abort(grpc.StatusCode.UNKNOWN, HTTP_500)
        elif outcome == "not_leader":
            # RpcExceptions.LeaderInfo in the real server: NOT_FOUND with the leader's endpoint.
            host, port = leader
            context.set_trailing_metadata(
                (
                    ("exception", "not-leader"),
                    ("leader-endpoint-host", host),
                    ("leader-endpoint-port", str(port)),
                )
            )
            context.abort(grpc.StatusCode.NOT_FOUND, "Leader info available")

    def read_reset_point(self, method: str) -> int | None:
        """Number of events after which this read is to be reset, or None."""
        with self._lock:
            c = self._config
            if c.reset_read_after is None or not self._applies(method):
                return None
            if c.reset_reads_next > 0:
                remaining = c.reset_reads_next - 1
                self._config = replace(
                    c,
                    reset_reads_next=remaining,
                    reset_read_after=c.reset_read_after if remaining else None,
                )
            return c.reset_read_after

    @property
    def max_append_size(self) -> int:
        with self._lock:
            return self._config.max_append_size

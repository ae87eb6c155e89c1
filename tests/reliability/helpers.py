"""Shared pieces of the reliability tests: the replica check, a fault-tolerant slice loop, and
the relay child's environment.

`check_replica` is the oracle every reliability test ends with: target == filtered source,
event for event (ids, types, content types, data in order per stream), zero duplicates and
zero gaps (every accepted source event id is on the target exactly once; in ordered mode the
target's `$all` holds them in the source's `$all` order).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.config import FilterConfig, JobConfig
from core.engine import SliceResult
from core.errors import RelayError, TransientError
from core.relay import Relay
from esdb_emulator import Emulator
from esdb_emulator.store import Store
from tests.engine.helpers import stream_view

ROOT = Path(__file__).parents[2]
CHILD = ROOT / "tests" / "crash" / "relay_child.py"


@dataclass
class ReplicaCheck:
    streams: int = 0
    events_checked: int = 0
    differences: list[str] = field(default_factory=list)
    duplicates: int = 0
    missing: int = 0
    out_of_order: bool = False

    @property
    def clean(self) -> bool:
        return not (self.differences or self.duplicates or self.missing or self.out_of_order)


def _user_ids(store: Store, filters: FilterConfig | None) -> list[str]:
    return [
        str(r.event_id)
        for r in store.iter_all()
        if not r.stream.startswith("$")
        and not r.type.startswith("$")
        and (filters is None or filters.accepts(r.stream, r.type))
    ]


def check_replica(
    source: Store, target: Store, filters: FilterConfig | None = None, *, ordered: bool = True
) -> ReplicaCheck:
    check = ReplicaCheck()
    for name in source.stream_names():
        if name.startswith("$"):
            continue
        if filters is not None and not filters.accepts_stream(name):
            if target.stream_names().count(name):
                check.differences.append(f"filtered-out stream on target: {name}")
            continue
        check.streams += 1
        expected, actual = stream_view(source, name), stream_view(target, name)
        if isinstance(expected, list) and filters is not None:
            expected = [e for e in expected if filters.accepts_event_type(e[1])]
        if isinstance(expected, list):
            check.events_checked += len(expected)
        if expected != actual:
            check.differences.append(name)
    source_names = set(source.stream_names())
    check.differences += [
        f"extra:{n}"
        for n in target.stream_names()
        if not n.startswith("$") and n not in source_names
    ]
    wanted = _user_ids(source, filters)
    got = _user_ids(target, None)
    check.duplicates = sum(n - 1 for n in Counter(got).values() if n > 1)
    check.missing = len(set(wanted) - set(got))
    check.out_of_order = ordered and wanted != got
    return check


@dataclass
class Drive:
    slices: int = 0
    failed_slices: int = 0
    retries: int = 0  # transient failures retried inside slices
    errors: list[str] = field(default_factory=list)
    permanent_errors: list[str] = field(default_factory=list)  # not retryable: must not occur
    last: SliceResult | None = None


def drive(
    job: JobConfig,
    *,
    max_slices: int = 400,
    relay_timeout: float = 5.0,
    on_step: Callable[[str], None] | None = None,
) -> Drive:
    """Run slices until caught up; a slice (or a connection) that fails is counted and the next
    one resumes — what a scheduler does. Bounded by `max_slices`."""
    outcome = Drive()
    relay: Relay | None = None
    try:
        while outcome.slices + outcome.failed_slices < max_slices:
            try:
                if relay is None:
                    relay = Relay(
                        job, timeout=relay_timeout, connect_timeout=relay_timeout, on_step=on_step
                    )
                result = relay.run_once()
            except RelayError as e:
                outcome.failed_slices += 1
                outcome.errors.append(str(e))
                if not isinstance(e, TransientError):
                    outcome.permanent_errors.append(f"{type(e).__name__}: {e}")
                time.sleep(0.05)
                continue
            outcome.slices += 1
            outcome.last = result
            if result.caught_up:
                return outcome
    finally:
        if relay is not None:
            outcome.retries = relay.source.retries + relay.target.retries
            relay.close()
    raise AssertionError(f"not caught up after {max_slices} slices: {outcome.errors[-5:]}")


def child_env(
    job_id: str, source: Emulator | str, target: Emulator | str, store_url: str, **extra: str
) -> dict[str, str]:
    """Environment of a relay child process (tests/crash/relay_child.py) for one job."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ESDB_RELAY_JOB_ID": job_id,
        "ESDB_RELAY_SOURCE": source if isinstance(source, str) else source.uri,
        "ESDB_RELAY_TARGET": target if isinstance(target, str) else target.uri,
        "ESDB_RELAY_CHECKPOINT_STORE": store_url,
        **extra,
    }

"""Shared pieces of the reliability tests: the replica check, a fault-tolerant slice loop, and
the relay child's environment.

`check_replica` is the oracle every reliability test ends with (tests/oracle.py, written from
the documented rules): per stream the reader's view of the target == the filtered source's
(ids, types, content types, data, metadata, state, stream metadata), zero duplicates and zero
gaps in `$all` (every accepted source event id on the target exactly once; in ordered mode in
the source's `$all` order).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.config import FilterConfig, JobConfig
from core.engine import SliceResult
from core.errors import RelayError, TransientError
from core.relay import Relay
from esdb_emulator import Emulator
from esdb_emulator.store import Store
from tests import oracle

ROOT = Path(__file__).parents[2]
CHILD = ROOT / "tests" / "crash" / "relay_child.py"


def check_replica(
    source: Store,
    target: Store,
    filters: FilterConfig | None = None,
    *,
    ordered: bool = True,
    multi_append: bool = True,
) -> oracle.Report:
    """tests/oracle.py for a job with these filters and the default settings (provenance
    added; multi-stream append allowed unless `multi_append` is False)."""
    filters = filters or FilterConfig()
    return oracle.compare(
        source,
        target,
        oracle.Job(
            include_streams=tuple(filters.include_streams),
            exclude_streams=tuple(filters.exclude_streams),
            exclude_event_types=tuple(filters.exclude_event_types),
            multi_append=multi_append,
            scavenge=filters.scavenge,
            ordered=ordered,
        ),
    )


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

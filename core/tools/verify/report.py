"""verify's report: its differences, and the file a resumable run saves its progress to."""

from __future__ import annotations

import hashlib
import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

from core.config import JobConfig
from core.connection import redact_connection_string
from core.errors import ConfigError

DEFAULT_MAX_DIFFERENCES = 1000


class DifferenceKind(StrEnum):
    MISSING_STREAM = "missing_stream"
    EXTRA_STREAM = "extra_stream"
    MISSING_EVENT = "missing_event"
    EXTRA_EVENT = "extra_event"
    DIFFERENT_EVENT = "different_event"
    ORDER = "order"
    DELETED_STATE = "deleted_state"
    METADATA = "metadata"
    ALL_RECORDS = "all_records"  # a stream's records in `$all`, hidden ones included
    ALL_ORDER = "all_order"  # the order of `$all` (ordered mode)


class Difference(BaseModel):
    model_config = ConfigDict(frozen=True)

    stream: str
    kind: DifferenceKind
    source_revision: int | None = None
    target_revision: int | None = None
    event_id: str | None = None
    detail: str = ""
    shard: int | None = Field(
        default=None, description="a sharded job's shard whose streams hold the difference"
    )


class VerifyReport(BaseModel):
    job_id: str
    sample: int | None = Field(default=None, description="sample size asked for, None = all")
    seed: int = 0
    transform: str | None = Field(
        default=None, description="the job's transform, applied to source events before comparing"
    )
    original_metadata: bool = True
    streams_in_source: int = Field(default=0, description="user streams the job's filters accept")
    sampled_streams: list[str] | None = Field(
        default=None, description="the streams a sample checked, sorted (None without a sample)"
    )
    streams_checked: int = 0
    streams_equal: int = 0
    streams_differing: int = 0
    extra_streams: int = Field(default=0, description="target streams not in the filtered source")
    extra_streams_checked: bool = Field(
        default=False, description="whether the target was scanned for extra streams (no sample)"
    )
    events_compared: int = 0
    events_unverified: int = Field(
        default=0, description="target events the source no longer shows ($maxAge, $maxCount)"
    )
    events_dead_lettered: int = Field(
        default=0,
        description="source events not on the target because the job dead-lettered them "
        "(its $esdb-relay-dead-letters-<job> stream on the target lists them): not differences",
    )
    differences_total: int = 0
    shards: int | None = Field(
        default=None, description="a sharded job's shard count (None: one chain)"
    )
    differences_by_shard: dict[int, int] = Field(
        default_factory=dict,
        description="a sharded job's differences per shard, by the stored plan (listed or not)",
    )
    max_differences: int = DEFAULT_MAX_DIFFERENCES
    differences: list[Difference] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    events_per_second: float = 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return self.differences_total == 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def differences_truncated(self) -> bool:
        return self.differences_total > len(self.differences)


def public_endpoint(connection_string: str) -> str:
    """Scheme and hosts only: no credentials, no query parameters (they may name key files)."""
    redacted = redact_connection_string(connection_string)
    scheme, _, rest = redacted.partition("://")
    hosts = rest.split("?", 1)[0].split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{hosts}"


STATE_VERSION = 2


class VerifyState(BaseModel):
    """What a resumed run needs: the streams to check, how many are done, the results so far."""

    version: int = STATE_VERSION
    fingerprint: str
    streams: list[str]
    done: int = 0
    report: VerifyReport
    extras: list[Difference] = Field(default_factory=list)
    extras_total: int = 0
    # `$all` differences (all_records.py), reported once the stream checks are over for the
    # streams they found equal, and the order only when nothing else differs.
    pending_all: list[Difference] = Field(default_factory=list)


def fingerprint(job: JobConfig, sample: int | None, seed: int, max_differences: int) -> str:
    """What must not change between a run and its resumption (no secrets: hosts only)."""
    parts = {
        "job_id": job.job_id,
        "source": public_endpoint(job.source.get_secret_value()),
        "target": public_endpoint(job.target.get_secret_value()),
        "filters": job.filters.model_dump(mode="json"),
        "transform": job.transform,
        "original_metadata": job.original_metadata,
        "sample": sample,
        "seed": seed,
        "max_differences": max_differences,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class StateFile:
    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path = path
        self.fingerprint = fingerprint

    def load(self) -> VerifyState | None:
        if not self.path.exists():
            return None
        try:
            state = VerifyState.model_validate_json(self.path.read_bytes())
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"verify state file {self.path} cannot be read: {str(e).splitlines()[0]}",
                hint="delete it to start over, or pass another --state file",
            ) from None
        if state.version != STATE_VERSION or state.fingerprint != self.fingerprint:
            raise ConfigError(
                f"verify state file {self.path} was written for another job, endpoints, "
                "filters, transform, sample or seed",
                hint="run with the same job and options, or delete the file to start over",
            )
        return state

    def save(self, state: VerifyState) -> None:
        # Write then rename, so an interruption mid-write never leaves half a state file.
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(state.model_dump_json(), encoding="utf-8")
        os.replace(partial, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class Differences:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: list[Difference] = []
        self.total = 0

    def add(self, stream: str, kind: DifferenceKind, detail: str, **fields: Any) -> None:
        if len(self.items) < self.limit:
            self.append(Difference(stream=stream, kind=kind, detail=detail, **fields))
        else:
            self.total += 1

    def append(self, difference: Difference) -> None:
        self.total += 1
        if len(self.items) < self.limit:
            self.items.append(difference)

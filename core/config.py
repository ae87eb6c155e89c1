"""JobConfig: the one schema of a relay job, from env vars, a TOML/YAML/JSON file or a payload.

Connection strings are ``SecretStr``: they never appear in ``repr``, ``str``, JSON dumps or error
messages. Invalid input raises ``ConfigError`` with one line per problem naming the field and
the fix.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from core.checkpoint import store_scheme
from core.config_errors import ENV_PREFIX, config_error, env_error
from core.config_files import payload_mapping, read_config_file
from core.connection import (
    CONNECTION_FIX,
    connection_string_problem,
    connection_warnings,
    options_problem,
)
from core.errors import ConfigError
from core.logs import logger
from core.shards import MAX_SHARDS, shard_job_id

MIB = 1024 * 1024

_JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_TRANSFORM_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*$")


def _problem(problem: str, fix: str) -> PydanticCustomError:
    return PydanticCustomError(
        "relay_config", "{problem} — {fix}", {"problem": problem, "fix": fix}
    )


# --- connection strings -------------------------------------------------------------------


def _check_connection_string(value: SecretStr) -> SecretStr:
    text = value.get_secret_value()
    problem = connection_string_problem(text) or options_problem(text)
    if problem:
        raise _problem(f"the connection string {problem}", CONNECTION_FIX)
    return value


ConnectionString = Annotated[SecretStr, AfterValidator(_check_connection_string)]


# --- sections -----------------------------------------------------------------------------


def _check_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise _problem(
            f"invalid regular expression: {exc}",
            "fix the pattern (Python `re` syntax; it is searched anywhere in the name, "
            "anchor it with ^ and $)",
        ) from None
    return pattern


Regex = Annotated[str, AfterValidator(_check_regex)]
Prefix = Annotated[str, Field(min_length=1)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


@dataclass(frozen=True, slots=True)
class Matcher:
    include_streams: tuple[re.Pattern[str], ...]
    exclude_streams: tuple[re.Pattern[str], ...]
    include_prefixes: tuple[str, ...]
    exclude_prefixes: tuple[str, ...]
    include_types: tuple[re.Pattern[str], ...]
    exclude_types: tuple[re.Pattern[str], ...]

    def accepts_stream(self, stream: str) -> bool:
        if (self.include_streams or self.include_prefixes) and not (
            any(p.search(stream) for p in self.include_streams)
            or stream.startswith(self.include_prefixes)
        ):
            return False
        return not (
            any(p.search(stream) for p in self.exclude_streams)
            or stream.startswith(self.exclude_prefixes)
        )

    def accepts_event_type(self, event_type: str) -> bool:
        if self.include_types and not any(p.search(event_type) for p in self.include_types):
            return False
        return not any(p.search(event_type) for p in self.exclude_types)


class FilterConfig(_Section):
    """Which events are replicated. Includes: an event passes if it matches any include (or
    there are none); excludes: it must match none. Regexes are searched (``re.search``)."""

    include_streams: list[Regex] = Field(
        default_factory=list, description="stream-name regexes; only matching streams are copied"
    )
    exclude_streams: list[Regex] = Field(
        default_factory=list, description="stream-name regexes; matching streams are skipped"
    )
    include_stream_prefixes: list[Prefix] = Field(
        default_factory=list, description="stream-name prefixes; only these streams are copied"
    )
    exclude_stream_prefixes: list[Prefix] = Field(
        default_factory=list, description="stream-name prefixes; these streams are skipped"
    )
    include_event_types: list[Regex] = Field(
        default_factory=list, description="event-type regexes; only matching events are copied"
    )
    exclude_event_types: list[Regex] = Field(
        default_factory=list, description="event-type regexes; matching events are skipped"
    )
    scavenge: bool = Field(
        default=False,
        description="true or false: drop events a scavenge would remove (deleted streams, "
        "past $maxAge/$maxCount/$tb)",
    )

    @functools.cached_property
    def matcher(self) -> Matcher:
        """The filters compiled once (called for every event read: a plain object's fields
        are much quicker to reach than a pydantic model's private attributes)."""
        return Matcher(
            tuple(re.compile(p) for p in self.include_streams),
            tuple(re.compile(p) for p in self.exclude_streams),
            tuple(self.include_stream_prefixes),
            tuple(self.exclude_stream_prefixes),
            tuple(re.compile(p) for p in self.include_event_types),
            tuple(re.compile(p) for p in self.exclude_event_types),
        )

    def accepts_stream(self, stream: str) -> bool:
        return self.matcher.accepts_stream(stream)

    def accepts_event_type(self, event_type: str) -> bool:
        return self.matcher.accepts_event_type(event_type)

    def accepts(self, stream: str, event_type: str) -> bool:
        return self.accepts_stream(stream) and self.accepts_event_type(event_type)


class BudgetConfig(_Section):
    """How much one slice may do; it stops cleanly at whichever limit comes first."""

    max_events: int = Field(default=20_000, ge=1, description="events read per slice, >= 1")
    max_bytes: int = Field(default=64 * MIB, ge=1, description="bytes read per slice, >= 1")
    deadline_seconds: float = Field(default=600.0, gt=0, description="seconds a slice may run, > 0")
    safety_margin_seconds: float = Field(
        default=10.0,
        ge=0,
        description="seconds kept back from the function's remaining time to commit, >= 0",
    )
    startup_margin_seconds: float = Field(
        default=10.0,
        ge=0,
        description="seconds a platform that does not tell the function its remaining time "
        "(Cloud Functions, Azure Functions) may have counted against the timeout before the "
        "process started (instance start-up), taken off the time left, >= 0",
    )

    def effective_deadline(self, remaining_seconds: float | None = None) -> float:
        """Seconds this slice may run given the function's remaining time (None: unlimited)."""
        if remaining_seconds is None:
            return self.deadline_seconds
        return max(0.0, min(self.deadline_seconds, remaining_seconds - self.safety_margin_seconds))


class BatchConfig(_Section):
    """One append to the target. EventStoreDB's default maximum append size is 1,048,576 bytes;
    the default stays under it."""

    max_events: int = Field(default=500, ge=1, description="events per append, >= 1")
    max_bytes: int = Field(
        default=1_000_000,
        ge=1,
        description="bytes per append, >= 1 and below the target's MaxAppendSize",
    )


# --- the job ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Which sources the next JobConfig() reads, highest priority first after init kwargs."""

    layers: tuple[Mapping[str, Any], ...] = ()
    env: bool = True
    file_layer: Mapping[str, Any] | None = None


_PLAN: ContextVar[_Plan | None] = ContextVar("esdb_relay_config_plan", default=None)


class _DictSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = dict(data)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class JobConfig(BaseSettings):
    """A relay job. Env vars: ``ESDB_RELAY_JOB_ID``, ``ESDB_RELAY_BUDGET__MAX_EVENTS``, lists
    and tables as JSON (``ESDB_RELAY_FILTERS__INCLUDE_STREAMS='["^order-"]'``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
    )

    job_id: str = Field(
        description="1-128 letters, digits, '_', '.' or '-', starting with a letter or digit"
    )
    source: ConnectionString = Field(description="source EventStoreDB connection string")
    target: ConnectionString = Field(description="target EventStoreDB connection string")
    mode: Literal["ordered", "partitioned"] = Field(
        default="ordered", description="'ordered' or 'partitioned'"
    )
    partitions: int = Field(
        default=1, ge=1, le=256, description="number of writers, 1-256 (partitioned mode)"
    )
    shards: int = Field(
        default=1,
        ge=1,
        le=MAX_SHARDS,
        description=f"chains the job is split into by stream name, 1-{MAX_SHARDS}; each shard "
        "keeps each of its streams in order, but the order across shards is not kept "
        "(docs/modes.md); fixed for the job's life once its first shard has started",
    )
    filters: FilterConfig = Field(default_factory=FilterConfig, description="event filters")
    transform: str | None = Field(
        default=None, description="optional hook 'module:function', e.g. 'my_pkg.hooks:fix'"
    )
    original_metadata: bool = Field(
        default=True,
        description="true or false: insert $originalStreamRevision/$originalPosition/"
        "$originalCreated into JSON-object metadata that holds none (every user byte kept)",
    )
    multi_append: bool = Field(
        default=True,
        description="true or false: in ordered mode, write several streams' events in one "
        "multi-stream append when the target has it (KurrentDB >= 25.1); the target then shows "
        "event metadata re-rendered with $schema.name/$schema.format added (false: byte for byte)",
    )
    budget: BudgetConfig = Field(default_factory=BudgetConfig, description="slice budget")
    batch: BatchConfig = Field(default_factory=BatchConfig, description="append batch limits")
    dead_letter: bool = Field(
        default=False,
        description="true or false: record oversize events in a dead-letter record and go on",
    )
    lease_ttl_seconds: float = Field(
        default=900.0,
        gt=0,
        description="seconds an invocation's lease lasts at most, > 0; under a cloud function "
        "the lease ends when the platform stops the function (its timeout), whatever this says",
    )
    schedule_seconds: float = Field(
        default=300.0,
        gt=0,
        description="seconds between the scheduled slices of a caught-up job, > 0: the "
        "period of the deployed schedule (default 5 minutes; `esdb-relay run` follows far more "
        "often). `status` calls a caught-up job idle when no slice ran for longer than this",
    )
    checkpoint_store: str = Field(
        default="sqlite:///esdb-relay.db",
        description="checkpoint store URL, e.g. sqlite:///esdb-relay.db or dynamodb://TABLE",
    )

    @field_validator("job_id")
    @classmethod
    def _job_id(cls, value: str) -> str:
        if not _JOB_ID_RE.match(value):
            raise _problem(
                "not a valid job id",
                "use 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit "
                "(e.g. orders-migration)",
            )
        return value

    @field_validator("partitions")
    @classmethod
    def _partitions(cls, value: int, info: ValidationInfo) -> int:
        if value > 1 and info.data.get("mode") == "ordered":
            raise _problem(
                "more than one partition needs partitioned mode",
                "set mode = 'partitioned', or partitions = 1 to keep the global order",
            )
        return value

    @field_validator("shards")
    @classmethod
    def _shards(cls, value: int, info: ValidationInfo) -> int:
        job_id = info.data.get("job_id") or ""
        if value > 1 and len(shard_job_id(job_id, value - 1)) > 128:
            raise _problem(
                "the job id is too long for a sharded job",
                "use a job id of at most 118 characters (each shard's key adds '.shard-N')",
            )
        return value

    @field_validator("transform")
    @classmethod
    def _transform(cls, value: str | None) -> str | None:
        if value is not None and not _TRANSFORM_RE.match(value):
            raise _problem(
                "not of the form module:function",
                "name an importable function, e.g. my_package.transforms:rename_types",
            )
        return value

    @field_validator("checkpoint_store")
    @classmethod
    def _checkpoint_store(cls, value: str) -> str:
        try:
            if store_scheme(value) == "sqlite":
                from core.stores.sqlite import parse_sqlite_url

                parse_sqlite_url(value)
        except ConfigError as exc:
            raise _problem(exc.message, exc.hint) from None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        plan = _PLAN.get() or _Plan()
        sources: list[PydanticBaseSettingsSource] = [init_settings]
        sources += [_DictSource(settings_cls, layer) for layer in plan.layers]
        if plan.env:
            sources.append(env_settings)
        if plan.file_layer is not None:
            sources.append(_DictSource(settings_cls, plan.file_layer))
        return tuple(sources)

    # --- loading --------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        file: str | Path | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> JobConfig:
        """Env vars, plus a config file and an invocation payload when given; a payload value
        wins over an env var, which wins over the file (tables are merged key by key)."""
        return cls._build(
            _Plan(
                layers=(payload_mapping(payload),) if payload is not None else (),
                env=True,
                file_layer=read_config_file(file) if file is not None else None,
            )
        )

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> JobConfig:
        """The payload alone (env vars ignored; use ``load(payload=...)`` to combine)."""
        return cls._build(_Plan(layers=(payload_mapping(payload),), env=False))

    @classmethod
    def _build(cls, plan: _Plan) -> JobConfig:
        token = _PLAN.set(plan)
        try:
            job = cls()
        except ValidationError as exc:
            # `from None`: the chained ValidationError would carry the raw input on tracebacks.
            raise config_error(exc, cls) from None
        except SettingsError as exc:
            raise env_error(exc) from None
        finally:
            _PLAN.reset(token)
        for warning in job.security_warnings():
            logger.warning(warning)
        return job

    def for_range(self, from_position: int, to_position: int) -> JobConfig:
        """The job of a backfill of `$all` from `from_position` to `to_position`: the same
        settings under its own key (lease, checkpoint, history, and a sharded range's plan)."""
        return self.model_copy(
            update={"job_id": range_job_id(self.job_id, from_position, to_position)}
        )

    def security_warnings(self) -> list[str]:
        """Plaintext or an ignored tlsVerifyCert=false, per side; logged whenever a job loads."""
        return connection_warnings(self.source.get_secret_value(), "source") + connection_warnings(
            self.target.get_secret_value(), "target"
        )


def range_job_id(job_id: str, from_position: int, to_position: int) -> str:
    """The key a backfill range of the job is kept under."""
    return f"{job_id}.backfill-{from_position}-{to_position}"


__all__ = [
    "BatchConfig",
    "BudgetConfig",
    "FilterConfig",
    "JobConfig",
]

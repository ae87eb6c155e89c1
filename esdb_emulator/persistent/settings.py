"""What a group is: its source (a stream, or `$all` with a filter) and its settings."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from esdbclient.protos.Grpc import persistent_pb2

from esdb_emulator.store import Record, visible_in_all

ALL = "$all"
LINK_EVENT_TYPE = "$>"

Pos = int | tuple[int, int]  # a stream revision, or (commit, prepare) in `$all`

_I32_MIN = -(2**31)


class EventFilter:
    """A `$all` subscription filter (EventFilter.cs: StreamName/EventType, Regex/Prefixes)."""

    def __init__(self, by_stream: bool, regex: str | None, prefixes: tuple[str, ...]) -> None:
        self.by_stream = by_stream
        self.regex_text = regex
        self.regex = re.compile(regex) if regex else None
        self.prefixes = prefixes

    @classmethod
    def from_proto(cls, f: persistent_pb2.CreateReq.AllOptions.FilterOptions) -> EventFilter:
        which = f.WhichOneof("filter")
        if which is None:
            raise ValueError("no filter expression")
        expression = getattr(f, which)
        if expression.regex:
            return cls(which == "stream_identifier", expression.regex, ())
        return cls(which == "stream_identifier", None, tuple(expression.prefix))

    def allows(self, record: Record) -> bool:
        if not visible_in_all(record):
            return False
        value = record.stream if self.by_stream else record.type
        if self.regex is not None:
            return self.regex.search(value) is not None  # .NET Regex.Match: a search
        return any(value.startswith(prefix) for prefix in self.prefixes)

    def to_dto(self) -> dict:
        # EventFilter.ParseToDto, as saved in the subscription configuration.
        return {
            "context": "streamid" if self.by_stream else "eventtype",
            "type": "regex" if self.regex_text else "prefix",
            "data": self.regex_text or ",".join(self.prefixes),
            "isAllStream": True,
        }

    @classmethod
    def from_dto(cls, dto: dict) -> EventFilter:
        by_stream = dto.get("context") == "streamid"
        data = str(dto.get("data") or "")
        if dto.get("type") == "regex":
            return cls(by_stream, data, ())
        return cls(by_stream, None, tuple(p for p in data.split(",") if p))


@dataclass(frozen=True)
class Source:
    """PS/PersistentSubscriptionSingleStreamEventSource.cs, ...AllStreamEventSource.cs."""

    stream: str  # "$all" for `$all`
    event_filter: EventFilter | None = None

    @property
    def is_all(self) -> bool:
        return self.stream == ALL

    def fmt(self, position: Pos) -> str:
        if isinstance(position, tuple):
            return f"C:{position[0]}/P:{position[1]}"
        return str(position)

    def parse(self, text: str) -> Pos:
        if self.is_all:
            commit, prepare = text.split("/")
            return (int(commit.removeprefix("C:")), int(prepare.removeprefix("P:")))
        return int(text)

    def is_live(self, position: Pos) -> bool:
        return position == ((-1, -1) if self.is_all else -1)


@dataclass(frozen=True, slots=True)
class Settings:
    resolve_links: bool = False
    extra_statistics: bool = False
    message_timeout_ms: int = 0
    max_retry_count: int = 0
    live_buffer_size: int = 0
    history_buffer_size: int = 0
    read_batch_size: int = 0
    checkpoint_after_ms: int = 0
    min_checkpoint_count: int = 0
    max_checkpoint_count: int = 0
    max_subscriber_count: int = 0
    consumer_strategy: str = "RoundRobin"

    @classmethod
    def from_request(cls, s: object, strategy: str) -> Settings:
        return cls(
            resolve_links=s.resolve_links,  # type: ignore[attr-defined]
            extra_statistics=s.extra_statistics,  # type: ignore[attr-defined]
            message_timeout_ms=_ms(s, "message_timeout"),
            max_retry_count=s.max_retry_count,  # type: ignore[attr-defined]
            live_buffer_size=s.live_buffer_size,  # type: ignore[attr-defined]
            history_buffer_size=s.history_buffer_size,  # type: ignore[attr-defined]
            read_batch_size=s.read_batch_size,  # type: ignore[attr-defined]
            checkpoint_after_ms=_ms(s, "checkpoint_after"),
            min_checkpoint_count=s.min_checkpoint_count,  # type: ignore[attr-defined]
            max_checkpoint_count=s.max_checkpoint_count,  # type: ignore[attr-defined]
            max_subscriber_count=s.max_subscriber_count,  # type: ignore[attr-defined]
            consumer_strategy=strategy,
        )

    @property
    def checkpoint_after(self) -> float:
        # ToCheckPointAfterTimeout: 0 ms is TimeSpan.MaxValue (never checkpoint by time).
        return math.inf if self.checkpoint_after_ms == 0 else self.checkpoint_after_ms / 1000.0

    @property
    def reported_checkpoint_after_ms(self) -> int:
        # Stats report (int)TimeSpan.MaxValue.TotalMilliseconds, which is int.MinValue on x64.
        return _I32_MIN if self.checkpoint_after_ms == 0 else self.checkpoint_after_ms


def _ms(settings: object, oneof: str) -> int:
    """message_timeout / checkpoint_after in milliseconds, from the ms or the ticks variant."""
    which = settings.WhichOneof(oneof)  # type: ignore[attr-defined]
    if which is None:
        return 0
    value = int(getattr(settings, which))
    # (int)TimeSpan.FromTicks(ticks).TotalMilliseconds truncates toward zero.
    return value if which.endswith("_ms") else int(value / 10_000)

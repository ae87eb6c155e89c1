"""The groups' definitions as the server saves them (PS/PersistentSubscriptionService.cs).

All of them are one `$PersistentConfig` event in `$persistentSubscriptionConfig`, written again
on every change, so the groups survive a snapshot and RestartSubsystem reloads them.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime

from esdb_emulator.persistent.settings import ALL, EventFilter, Pos, Settings, Source
from esdb_emulator.persistent.strategies import STRATEGIES
from esdb_emulator.store import ANY, JSON, ProposedEvent, Store, StreamDeleted, StreamNotFound

log = logging.getLogger(__name__)

CONFIG_STREAM = "$persistentSubscriptionConfig"  # SystemStreams.PersistentSubscriptionConfig
CONFIG_EVENT_TYPE = "$PersistentConfig"  # SystemEventTypes.PersistentSubscriptionConfig


def config_entry(source: Source, group: str, settings: Settings, start: Pos) -> dict:
    """A PersistentSubscriptionEntry as Json.ToJsonBytes writes it (camelCase, no defaults)."""
    entry = {
        "stream": source.stream,
        "group": group,
        "filter": source.event_filter.to_dto() if source.event_filter else None,
        "resolveLinkTos": settings.resolve_links,
        "extraStatistics": settings.extra_statistics,
        "messageTimeout": settings.message_timeout_ms,
        "startFrom": -(2**63) if isinstance(start, tuple) else start,
        "startPosition": source.fmt(start),
        "liveBufferSize": settings.live_buffer_size,
        "historyBufferSize": settings.history_buffer_size,
        "maxRetryCount": settings.max_retry_count,
        "readBatchSize": settings.read_batch_size,
        "checkPointAfter": settings.checkpoint_after_ms,
        "minCheckPointCount": settings.min_checkpoint_count,
        "maxCheckPointCount": settings.max_checkpoint_count,
        "maxSubscriberCount": settings.max_subscriber_count,
        "namedConsumerStrategy": settings.consumer_strategy,
    }
    return {k: v for k, v in entry.items() if v is not None and v is not False and v != 0}


def parse_entry(entry: dict) -> tuple[Source, str, Settings, Pos]:
    """(source, group, settings, start) of a saved entry; KeyError, ValueError, TypeError or
    re.error when it is not one."""
    strategy = entry.get("namedConsumerStrategy") or (
        "RoundRobin" if entry.get("preferRoundRobin") else "DispatchToSingle"
    )
    if strategy not in STRATEGIES:
        raise ValueError(f"invalid consumer strategy {strategy!r}")
    stream = entry["stream"]
    event_filter = None
    if stream == ALL and entry.get("filter"):
        event_filter = EventFilter.from_dto(entry["filter"])
    source = Source(stream, event_filter)
    start = source.parse(entry.get("startPosition") or str(entry.get("startFrom", 0)))
    settings = Settings(
        resolve_links=bool(entry.get("resolveLinkTos", False)),
        extra_statistics=bool(entry.get("extraStatistics", False)),
        message_timeout_ms=int(entry.get("messageTimeout", 0)),
        max_retry_count=int(entry.get("maxRetryCount", 0)),
        live_buffer_size=int(entry.get("liveBufferSize", 0)),
        history_buffer_size=int(entry.get("historyBufferSize", 0)),
        read_batch_size=int(entry.get("readBatchSize", 0)),
        checkpoint_after_ms=int(entry.get("checkPointAfter", 0)),
        min_checkpoint_count=int(entry.get("minCheckPointCount", 0)),
        max_checkpoint_count=int(entry.get("maxCheckPointCount", 0)),
        max_subscriber_count=int(entry.get("maxSubscriberCount", 0)),
        consumer_strategy=strategy,
    )
    return source, entry["group"], settings, start


class Configuration:
    """The saved entries, one a group, in the order the server keeps them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.entries: list[dict] = []

    def read(self) -> list[dict]:
        """LoadConfiguration: the entries of the last `$PersistentConfig` event."""
        try:
            records = self.store.visible_records(CONFIG_STREAM)
        except (StreamNotFound, StreamDeleted):
            return []
        if not records:
            return []
        try:
            config = json.loads(records[-1].data)
        except (ValueError, UnicodeDecodeError):
            log.error("invalid persistent subscription configuration in %s", CONFIG_STREAM)
            return []
        return list(config.get("entries") or ())

    def save(self, user: str | None) -> None:
        """SaveConfiguration: the whole configuration as one event, `$maxCount` 2."""
        if self.store.stream_metadata(CONFIG_STREAM).get("$maxCount") is None:
            self.store.set_metadata(CONFIG_STREAM, {"$maxCount": 2})
        config: dict = {
            "version": "2",
            "updated": datetime.now().astimezone().isoformat(),
            "updatedBy": user,
            "entries": self.entries,
        }
        config = {k: v for k, v in config.items() if v is not None}
        data = json.dumps(config, indent=2).encode()
        event = ProposedEvent(str(uuid.uuid4()), CONFIG_EVENT_TYPE, JSON, data)
        self.store.append(CONFIG_STREAM, ANY, [event])

    def replace(self, stream: str, group: str, entry: dict) -> None:
        """The group's entry becomes `entry` (added when it has none)."""
        index = self._index(stream, group)
        if index < 0:
            self.entries.append(entry)
        else:
            self.entries[index] = entry

    def remove(self, stream: str, group: str) -> None:
        index = self._index(stream, group)
        if index >= 0:
            del self.entries[index]

    def _index(self, stream: str, group: str) -> int:
        for i in range(len(self.entries) - 1, -1, -1):
            if self.entries[i].get("stream") == stream and self.entries[i].get("group") == group:
                return i
        return -1

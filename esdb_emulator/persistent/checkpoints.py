"""A group's checkpoint stream (PS/PersistentSubscriptionCheckpointReader.cs, ...Writer.cs).

Checkpoints are `$SubscriptionCheckpoint` events in `$persistentsubscription-<key>-checkpoint`,
each the position as a JSON string ("12", or "C:1/P:1" in `$all`).
"""

from __future__ import annotations

import json
import logging
import uuid

from esdb_emulator.persistent.settings import Pos, Source
from esdb_emulator.store import (
    ANY,
    JSON,
    ProposedEvent,
    Store,
    StreamDeleted,
    StreamNotFound,
    WrongExpectedVersion,
)

log = logging.getLogger(__name__)

CHECKPOINT_EVENT_TYPE = "$SubscriptionCheckpoint"


class Checkpoints:
    def __init__(self, store: Store, source: Source, key: str) -> None:
        self.store = store
        self.source = source
        self.key = key
        self.stream = f"$persistentsubscription-{key}-checkpoint"

    def read(self) -> Pos | None:
        # PersistentSubscriptionCheckpointReader: the last event of the checkpoint stream.
        try:
            records = self.store.visible_records(self.stream)
        except (StreamNotFound, StreamDeleted):
            return None
        if not records:
            return None
        last = records[-1]
        if last.type not in ("SubscriptionCheckpoint", CHECKPOINT_EVENT_TYPE):
            return None
        try:
            return self.source.parse(json.loads(last.data))
        except (ValueError, TypeError, AttributeError):
            return None

    def write(self, position: Pos) -> None:
        # PersistentSubscriptionCheckpointWriter.PublishCheckpoint: the position as a JSON string.
        data = json.dumps(self.source.fmt(position)).encode()
        event = ProposedEvent(str(uuid.uuid4()), CHECKPOINT_EVENT_TYPE, JSON, data)
        try:
            self.store.append(self.stream, ANY, [event])
        except (StreamDeleted, WrongExpectedVersion) as e:
            log.error("%s: unable to write checkpoint: %s", self.key, e)

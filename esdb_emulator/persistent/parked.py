"""A group's parked messages (PS/PersistentSubscriptionMessageParker.cs): `$>` links in
`$persistentsubscription-<key>-parked`, replayed by truncating the stream (`$tb`) past them."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime

from esdb_emulator.persistent.client import Message
from esdb_emulator.persistent.settings import LINK_EVENT_TYPE
from esdb_emulator.store import (
    ANY,
    OCTET_STREAM,
    ProposedEvent,
    Store,
    StreamDeleted,
    StreamNotFound,
    WrongExpectedVersion,
)

log = logging.getLogger(__name__)

_ADMINS_ONLY = {
    "$r": "$admins",
    "$w": "$admins",
    "$d": "$admins",
    "$mr": "$admins",
    "$mw": "$admins",
}


class ParkedMessages:
    def __init__(self, store: Store, key: str) -> None:
        self.store = store
        self.key = key
        self.stream = f"$persistentsubscription-{key}-parked"
        self.last = -1
        self.truncate_before = -1

    def load_stats(self) -> None:
        # PersistentSubscriptionMessageParker.BeginLoadStats (only run after a checkpoint).
        try:
            records = self.store.visible_records(self.stream)
        except (StreamNotFound, StreamDeleted):
            return
        if not records:  # everything was replayed ($tb past the end)
            return
        self.last = records[-1].revision
        self.truncate_before = records[0].revision

    @property
    def count(self) -> int:
        if self.last == -1:
            return 0
        if self.truncate_before == -1:
            return self.last + 1
        return self.last - self.truncate_before + 1

    def park(self, message: Message, reason: str) -> None:
        """BeginParkMessage: a link to the message's event in the parked stream."""
        original = message.original
        if message.event is not None:
            data = f"{message.event.revision}@{message.event.stream}".encode()
        else:  # an unresolved link: keep the link's own data
            data = original.data
        meta: dict = {"added": datetime.now().astimezone().isoformat(), "reason": reason}
        if original.revision:
            meta["subscriptionEventNumber"] = original.revision
        event = ProposedEvent(
            str(uuid.uuid4()),
            LINK_EVENT_TYPE,
            OCTET_STREAM,
            data,
            json.dumps(meta, indent=2).encode(),
        )
        try:
            result = self.store.append(self.stream, ANY, [event])
            self.last = result.last_revision
        except (StreamDeleted, WrongExpectedVersion) as e:
            log.error("%s: unable to park message %s: %s", self.key, message.event_id, e)

    def replay(self, stop_at: int | None) -> list[Message] | None:
        """The parked messages before `stop_at` (all when None), as messages to retry; the
        stream is truncated past them. None when nothing is parked."""
        try:
            records = self.store.visible_records(self.stream)
        except (StreamNotFound, StreamDeleted):
            return None
        if not records:
            return None
        end = records[-1].revision
        stop = min(stop_at, end + 1) if stop_at is not None else end + 1
        messages = []
        for record in records:
            if record.revision >= stop:
                break
            target = (
                self.store.resolve_link(record.data) if record.type == LINK_EVENT_TYPE else record
            )
            if target is None:
                continue
            # Read from a stream: no position; the parked link is the original event.
            messages.append(Message(record.event_id, target, record, None, None, replayed=True))
        try:
            self.store.set_metadata(self.stream, {"$tb": stop, "$acl": _ADMINS_ONLY})
            self.truncate_before = stop
        except (StreamDeleted, WrongExpectedVersion) as e:
            log.error("%s: unable to truncate parked messages: %s", self.key, e)
        return messages

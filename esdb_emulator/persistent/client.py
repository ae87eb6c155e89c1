"""A consumer: the messages it is sent (an OutstandingMessage) and its Read call
(PS/PersistentSubscriptionClient.cs)."""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from esdb_emulator.persistent.errors import Dropped
from esdb_emulator.persistent.settings import Pos
from esdb_emulator.request_stats import RequestStatistics
from esdb_emulator.store import Record

if TYPE_CHECKING:
    from esdb_emulator.persistent.subscription import Subscription


@dataclass(slots=True)
class Message:
    """An OutstandingMessage: a resolved event with its retry count and sequence number."""

    event_id: str  # OriginalEvent.EventId: the link's id when there is a link
    event: Record | None  # None for a link whose target is gone
    link: Record | None
    wire_position: int | None  # ResolvedEvent.OriginalPosition (None: no_position)
    position: Pos | None  # position in the subscription's source; None when replayed
    retry_count: int = 0
    replayed: bool = False  # replayed from the parked messages stream
    seq: int | None = None
    previous: Pos | None = None  # position of the message pushed before it
    expires: float = 0.0

    @property
    def original(self) -> Record:
        original = self.link or self.event
        assert original is not None
        return original


class Client:
    """One Read call (PersistentSubscriptionClient): in-flight slots and an outbox."""

    def __init__(
        self,
        key: str,
        max_in_flight: int,
        username: str,
        connection_name: str,
        structured_ids: bool,
    ) -> None:
        self.key = key
        self.correlation_id = str(uuid.uuid4())
        self.max_in_flight = max_in_flight
        self.available = max_in_flight
        self.unconfirmed: dict[str, Message] = {}
        self.username = username
        self.connection_name = connection_name
        self.structured_ids = structured_ids
        self.total_items = 0
        self.last_total_items = 0
        self.subscription: Subscription | None = None
        # callbacks (client, message), for Pinned bookkeeping
        self.on_confirmed: list[Callable[[Client, Message], None]] = []
        self.statistics: RequestStatistics | None = None  # with the group's extra statistics
        self._cond = threading.Condition()
        self._outbox: deque[tuple[Message, int]] = deque()
        self._dropped: Dropped | None = None

    @property
    def in_flight(self) -> int:
        return len(self.unconfirmed)

    def push(self, message: Message) -> bool:
        if self.available <= 0:
            return False
        self.available -= 1
        self.total_items += 1
        if self.statistics is not None:
            self.statistics.start(message.event_id)
        with self._cond:
            self._outbox.append((message, message.retry_count))
            self._cond.notify_all()
        self.unconfirmed.setdefault(message.event_id, message)
        return True

    def confirm(self, event_ids: Iterable[str]) -> None:
        for event_id in event_ids:
            if self.statistics is not None:
                self.statistics.end(event_id)
            message = self.unconfirmed.pop(event_id, None)
            if message is None:
                continue
            self.available += 1
            for callback in self.on_confirmed:
                callback(self, message)

    def drop(self, error: Dropped) -> None:
        with self._cond:
            if self._dropped is None:
                self._dropped = error
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def take(self, timeout: float) -> tuple[list[tuple[Message, int]], Dropped | None]:
        with self._cond:
            if not self._outbox and self._dropped is None:
                self._cond.wait(timeout)
            items = list(self._outbox)
            self._outbox.clear()
            return items, self._dropped

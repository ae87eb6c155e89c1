"""What GetInfo and List report of a group (PS/PersistentSubscriptionStats.cs), as
Grpc/PersistentSubscriptions.Info.cs converts it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from esdbclient.protos.Grpc import persistent_pb2

if TYPE_CHECKING:
    from esdb_emulator.persistent.subscription import Subscription

_Info = persistent_pb2.SubscriptionInfo


class Statistics:
    """The rates since the previous measurement, as GetStatistics computes them."""

    def __init__(self) -> None:
        self._clock = time.monotonic()
        self._last_time = 0.0
        self._last_items = 0

    def info(self, sub: Subscription) -> persistent_pb2.SubscriptionInfo:
        """PersistentSubscriptionStats.GetStatistics."""
        now = time.monotonic() - self._clock
        elapsed = now - self._last_time
        items = sub.total_items - self._last_items
        self._last_time, self._last_items = now, sub.total_items

        def per_second(count: int) -> int:
            return int(count / elapsed) if elapsed > 0 else 0

        connections = []
        for client in sub.clients.values():
            since = client.total_items - client.last_total_items
            client.last_total_items = client.total_items
            connections.append(
                _Info.ConnectionInfo(
                    **{"from": ""},  # gRPC consumers connect with From = string.Empty
                    username=client.username,
                    average_items_per_second=per_second(since),
                    total_items=client.total_items,
                    count_since_last_measurement=since,
                    available_slots=client.available,
                    in_flight_messages=client.in_flight,
                    connection_name=client.connection_name,
                    observed_measurements=[
                        _Info.Measurement(key=key, value=value)
                        for key, value in (
                            client.statistics.measurements() if client.statistics else ()
                        )
                    ],
                )
            )
        s = sub.settings
        source = sub.source
        return _Info(
            event_source=source.stream,
            group_name=sub.group,
            status=_status(sub),
            connections=connections,
            average_per_second=per_second(items),
            total_items=sub.total_items,
            count_since_last_measurement=items,
            last_checkpointed_event_position=(
                source.fmt(sub.stats_checkpoint) if sub.stats_checkpoint is not None else ""
            ),
            last_known_event_position=(
                source.fmt(sub.stats_known) if sub.stats_known is not None else ""
            ),
            resolve_link_tos=s.resolve_links,
            start_from=source.fmt(sub.start_from),
            message_timeout_milliseconds=s.message_timeout_ms,
            extra_statistics=s.extra_statistics,
            max_retry_count=s.max_retry_count,
            live_buffer_size=s.live_buffer_size,
            buffer_size=s.history_buffer_size,
            read_batch_size=s.read_batch_size,
            check_point_after_milliseconds=s.reported_checkpoint_after_ms,
            min_check_point_count=s.min_checkpoint_count,
            max_check_point_count=s.max_checkpoint_count,
            read_buffer_count=len(sub.buffer),
            live_buffer_count=sub.live_count,
            retry_buffer_count=len(sub.retry),
            total_in_flight_messages=sum(c.in_flight for c in sub.clients.values()),
            outstanding_messages_count=len(sub.outstanding),
            named_consumer_strategy=sub.strategy.name,
            max_subscriber_count=s.max_subscriber_count,
            parked_message_count=sub.parked.count,
        )


def _status(sub: Subscription) -> str:
    # PersistentSubscriptionState flags, formatted as .NET does ("Behind", "Live", ...).
    names = ["Live" if sub.live else "Behind"]
    return ", ".join(names)

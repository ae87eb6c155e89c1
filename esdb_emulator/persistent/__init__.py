"""The `event_store.client.persistent_subscriptions.PersistentSubscriptions` gRPC service.

A Python model of EventStoreDB's persistent subscription subsystem, written from reading the
server (EventStore/EventStore: src/EventStore.Core/Services/PersistentSubscription/*.cs, here
"PS/<file>", and src/EventStore.Core/Services/Transport/Grpc/PersistentSubscriptions.*.cs, here
"Grpc/<file>") and esdbclient's suite against a real server (pyeventsourcing/esdbclient
tests/test_client.py, test_subscription_*).

As the real server does it:
- Groups are keyed `<stream>::<group>` (`$all::<group>`); that key is the subscription id the
  Read call confirms. Their settings are saved as one `$PersistentConfig` event in
  `$persistentSubscriptionConfig` (PS/PersistentSubscriptionService.cs SaveConfiguration), so
  they survive a snapshot and RestartSubsystem reloads them; checkpoints are
  `$SubscriptionCheckpoint` events in `$persistentsubscription-<key>-checkpoint` (a JSON string,
  "12" or "C:1/P:1"); parked messages are `$>` links in `$persistentsubscription-<key>-parked`.
- Start positions are inclusive ("start" = 0 / C:0/P:0, "end" = -1 / C:-1/P:-1 = only events
  written after the group was (re)built); a checkpoint wins over the start position.
- Delivery takes the retry buffer first, then the read buffer; a consumer may have as many
  messages in flight as the `buffer_size` it asked for; strategies DispatchToSingle, RoundRobin,
  Pinned and PinnedByCorrelation (PS/ConsumerStrategy/*.cs).
- Acks; nacks park / retry / skip / stop (stop, like the server, only forgets the message) /
  unknown (= retry); message timeouts retry with retry_count + 1 and park once
  retry_count >= max_retry_count; a consumer that leaves has its in-flight messages retried.
- Checkpoints by sequence number as in PS/PersistentSubscription.cs TryMarkCheckpoint: the
  position before the oldest unacknowledged message, written when max_checkpoint_count
  messages are done, or on the timer once checkpoint_after has passed and at least
  min_checkpoint_count are done (checkpoint_after 0 means never by time).
- GetInfo/List report PS/PersistentSubscriptionStats.cs fields, including
  last_checkpointed_event_position, last_known_event_position and start_from.
- Errors carry the real status codes, messages and trailing metadata (Grpc/RpcExceptions.cs), so
  esdbclient raises NotFound, AlreadyExists, MaximumSubscriptionsReached, InternalError...

Deliberate differences:
- The server's timer ticks every second (PersistentSubscriptionService.cs); the emulator ticks
  every `PersistentSubscriptionsService.tick_seconds` (0.1 s) so timeouts and time-based
  checkpoints are observed sooner.
- Events are pulled from the store by one background thread rather than pushed on commit;
  every event carries its commit position, read from history or live, as the server's do.
- The default `$all` filter (EventFilter.cs DefaultAllFilter: no `$epoch-information`, no
  `$all` subscription checkpoints or parked messages) also applies to history reads.
- A filtered `$all` group advances its checkpoint over filtered-out events only while no
  buffered message is waiting (the server can checkpoint past buffered, undelivered events).
- Pinned strategies hash stream names with crc32 instead of xxHash.
- With extra statistics, each connection's push-to-ack latencies are reported
  (esdb_emulator.request_stats).

The rooms:
- service.py: the gRPC servicer (Create, Update, Delete, GetInfo, List, ReplayParked,
  RestartSubsystem, Read) and the thread that feeds every group;
- subscription.py: one group: reading its source, delivery, acks, nacks, retries, checkpoints;
- client.py: a consumer's Read call and the messages it is sent; strategies.py: which consumer
  gets a message;
- checkpoints.py, parked.py: the group's checkpoint and parked-message streams;
- config.py: the saved `$PersistentConfig`; settings.py: a group's source and settings;
- stats.py: GetInfo's statistics; wire.py: protobuf in and out; errors.py: RpcExceptions.
"""

from esdb_emulator.persistent.service import PersistentSubscriptionsService

__all__ = ["PersistentSubscriptionsService"]

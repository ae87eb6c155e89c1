"""The `PersistentSubscriptions` gRPC servicer (PS/PersistentSubscriptionService.cs,
Grpc/PersistentSubscriptions.*.cs): the calls, and the thread that delivers to every group."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator

import grpc
from esdbclient.protos.Grpc import persistent_pb2, persistent_pb2_grpc, shared_pb2

import esdb_emulator.persistent.wire as wire
from esdb_emulator.persistent.client import Client
from esdb_emulator.persistent.config import Configuration, config_entry, parse_entry
from esdb_emulator.persistent.errors import (
    abort,
    exists,
    fail,
    handler_exception,
    max_subscribers,
    not_found,
)
from esdb_emulator.persistent.settings import ALL, Pos, Settings, Source
from esdb_emulator.persistent.strategies import STRATEGIES
from esdb_emulator.persistent.subscription import Subscription
from esdb_emulator.store import Store
from esdb_emulator.streams import Guard

log = logging.getLogger(__name__)


class PersistentSubscriptionsService(persistent_pb2_grpc.PersistentSubscriptionsServicer):
    tick_seconds = 0.1  # the server's timer ticks every 1 s

    def __init__(self, store: Store, guard: Guard) -> None:
        self.store = store
        self.guard = guard
        self._lock = threading.RLock()
        self._subscriptions: dict[str, Subscription] = {}
        # Event source -> its groups; a source stays listed after its last group is deleted,
        # until a restart (PersistentSubscriptionService._subscriptionTopics).
        self._topics: dict[str, list[Subscription]] = {}
        self._config = Configuration(store)
        self._closed = threading.Event()
        self._wakeup = threading.Event()  # set when groups are added, and on close
        with self._lock:
            self._load_configuration()
        self._thread = threading.Thread(target=self._run, name="esdb-emu-persistent", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._wakeup.set()
        with self.store.changed:
            self.store.changed.notify_all()
        self._thread.join(timeout=5)
        with self._lock:
            for subscription in self._subscriptions.values():
                subscription.shutdown()

    def _run(self) -> None:
        """Pull new events into every group and run the timer (timeouts, checkpoints)."""
        next_tick = time.monotonic() + self.tick_seconds
        seen = -1
        while not self._closed.is_set():
            with self._lock:
                idle = not self._subscriptions
            if idle:
                # Nothing to deliver: do not wake up on every append (benchmarks append a lot).
                self._wakeup.wait()
                self._wakeup.clear()
                seen = -1
                continue
            with self.store.changed:
                if len(self.store) == seen:
                    self.store.changed.wait(max(0.0, next_tick - time.monotonic()))
                seen = len(self.store)
            if self._closed.is_set():
                return
            try:
                with self._lock:
                    subscriptions = list(self._subscriptions.values())
                    for subscription in subscriptions:
                        subscription.fill()
                        subscription.push()
                    now = time.monotonic()
                    if now >= next_tick:
                        next_tick = now + self.tick_seconds
                        for subscription in subscriptions:
                            subscription.tick(now)
            except Exception:  # keep the subsystem running, like the server's queue
                log.exception("persistent subscriptions: error while delivering")

    # ------------------------------------------------------------------ groups
    def _load_configuration(self) -> None:
        """LoadConfiguration: rebuild the groups from the last `$PersistentConfig` event."""
        self._subscriptions.clear()
        self._topics.clear()
        self._config.entries = []
        for entry in self._config.read():
            try:
                subscription = Subscription(self.store, *parse_entry(entry))
            except (KeyError, ValueError, TypeError, re.error) as e:
                log.error("ignoring persistent subscription entry %r: %s", entry, e)
                continue
            if subscription.key in self._subscriptions:
                log.warning("duplicate persistent subscription %s ignored", subscription.key)
                continue
            self._add(subscription)
            self._config.entries.append(entry)

    def _add(self, subscription: Subscription) -> None:
        self._subscriptions[subscription.key] = subscription
        self._topics.setdefault(subscription.source.stream, []).append(subscription)
        self._wakeup.set()

    def _new(
        self,
        context: grpc.ServicerContext,
        source: Source,
        group: str,
        settings: Settings,
        start: Pos,
    ) -> Subscription:
        try:
            return Subscription(self.store, source, group, settings, start)
        except ValueError as e:
            fail(context, source.stream, group, str(e))

    def _check_strategy(
        self, context: grpc.ServicerContext, stream: str, group: str, strategy: str
    ) -> None:
        if strategy not in STRATEGIES:
            fail(context, stream, group, f"Consumer strategy {strategy} does not exist.")

    def _check_stream(self, context: grpc.ServicerContext, stream: str, group: str) -> None:
        # Handle(...ToStream): these are answered with Fail.
        if not stream:
            fail(context, stream, group, "Bad stream name.")
        if stream == ALL:
            fail(
                context,
                stream,
                group,
                "Persistent subscriptions to $all are only supported over gRPC through gRPC "
                "clients",
            )

    def _check_start(
        self, context: grpc.ServicerContext, source: Source, group: str, start: Pos
    ) -> None:
        error = self._validate_start(source, start)
        if error:
            fail(context, source.stream, group, error)

    def _validate_start(self, source: Source, start: Pos) -> str | None:
        """PersistentSubscriptionService.ValidateStartFrom."""
        if not isinstance(start, tuple):
            if start < -1:
                return (
                    "Invalid Start From position: event number must be greater than or equal to -1."
                )
            return None
        commit, prepare = start
        if prepare > commit:
            return (
                "Invalid Start From position: prepare position must be less than or equal to "
                "the commit position."
            )
        # ReadIndex.LastIndexedPosition: the position of the last record written.
        if commit > self.store.last_position:
            return (
                "Invalid Start From position: commit position must be less than or equal to "
                "the last commit position in the transaction file."
            )
        if (prepare <= -1 or commit <= -1) and not (prepare == -1 and commit == -1):
            return (
                "Invalid Start From position: prepare and commit positions must be greater "
                "than or equal to 0 or both equal to -1."
            )
        return None

    # ------------------------------------------------------------------ Create
    def Create(
        self, request: persistent_pb2.CreateReq, context: grpc.ServicerContext
    ) -> persistent_pb2.CreateResp:
        self.guard("Create", context)
        options = request.options
        s = options.settings
        # Grpc/...Create.cs: the string field, or the deprecated enum's name when it is empty.
        strategy = s.consumer_strategy or wire.named_strategy(s.named_consumer_strategy)
        group = options.group_name
        source, start = wire.created_source(options, context)
        settings = Settings.from_request(s, strategy)
        user = wire.username(wire.metadata(context))
        with self._lock:
            if not source.is_all:
                self._check_stream(context, source.stream, group)
            self._check_strategy(context, source.stream, group, strategy)
            self._check_start(context, source, group, start)
            if f"{source.stream}::{group}" in self._subscriptions:
                exists(context, source.stream, group)
            subscription = self._new(context, source, group, settings, start)
            self._add(subscription)
            self._config.entries.append(config_entry(source, group, settings, start))
            self._config.save(user)
            subscription.fill()
        return persistent_pb2.CreateResp()

    # ------------------------------------------------------------------ Update
    def Update(
        self, request: persistent_pb2.UpdateReq, context: grpc.ServicerContext
    ) -> persistent_pb2.UpdateResp:
        self.guard("Update", context)
        options = request.options
        s = options.settings
        strategy = wire.named_strategy(s.named_consumer_strategy)
        group = options.group_name
        is_all = options.WhichOneof("stream_option") == "all"
        if is_all:
            stream, start = ALL, wire.all_start(options.all, context, create=False)
        else:
            stream, start = wire.stream_and_start(options, context)
        settings = Settings.from_request(s, strategy)
        user = wire.username(wire.metadata(context))
        with self._lock:
            if not is_all:
                self._check_stream(context, stream, group)
            old = self._subscriptions.get(f"{stream}::{group}")
            if old is None:
                not_found(context, stream, group)
            self._check_strategy(context, stream, group, strategy)
            # A `$all` group keeps its filter (UpdateReq has none).
            source = old.source if is_all else Source(stream)
            self._check_start(context, source, group, start)
            subscription = self._new(context, source, group, settings, start)
            # UpdateSubscription: the old group drops its consumers; the new one resumes from
            # the last checkpoint.
            old.shutdown()
            self._subscriptions[subscription.key] = subscription
            topic = self._topics[stream]
            topic[topic.index(old)] = subscription
            self._config.replace(stream, group, config_entry(source, group, settings, start))
            self._config.save(user)
            subscription.fill()
        return persistent_pb2.UpdateResp()

    # ------------------------------------------------------------------ Delete
    def Delete(
        self, request: persistent_pb2.DeleteReq, context: grpc.ServicerContext
    ) -> persistent_pb2.DeleteResp:
        self.guard("Delete", context)
        options = request.options
        which, stream = wire.subscription_stream(options, context)
        group = options.group_name
        user = wire.username(wire.metadata(context))
        with self._lock:
            if which != "all":
                self._check_stream(context, stream, group)
            subscription = self._subscriptions.get(f"{stream}::{group}")
            if subscription is None:
                not_found(context, stream, group)
            del self._subscriptions[subscription.key]
            self._topics[stream].remove(subscription)
            subscription.shutdown()
            self._config.remove(stream, group)
            subscription.delete_streams()
            self._config.save(user)
        return persistent_pb2.DeleteResp()

    # ------------------------------------------------------------------ GetInfo / List
    def GetInfo(
        self, request: persistent_pb2.GetInfoReq, context: grpc.ServicerContext
    ) -> persistent_pb2.GetInfoResp:
        self.guard("GetInfo", context)
        options = request.options
        _, stream = wire.subscription_stream(options, context)
        with self._lock:
            for subscription in self._topics.get(stream, ()):
                if subscription.group == options.group_name:
                    return persistent_pb2.GetInfoResp(subscription_info=subscription.info())
        not_found(context, stream, options.group_name)

    def List(
        self, request: persistent_pb2.ListReq, context: grpc.ServicerContext
    ) -> persistent_pb2.ListResp:
        self.guard("List", context)
        options = request.options
        which = options.WhichOneof("list_option")
        with self._lock:
            if which == "list_all_subscriptions":
                # GetAllPersistentSubscriptionStats: topics in sorted order.
                groups = [s for topic in sorted(self._topics) for s in self._topics[topic]]
            elif which == "list_for_stream":
                stream_option = options.list_for_stream
                kind = stream_option.WhichOneof("stream_option")
                if kind == "all":
                    stream = ALL
                elif kind == "stream":
                    stream = wire.stream_name(stream_option.stream)
                else:
                    handler_exception(context)
                if stream not in self._topics:
                    not_found(context, stream, "")
                groups = list(self._topics[stream])
            else:
                handler_exception(context)
            return persistent_pb2.ListResp(subscriptions=[s.info() for s in groups])

    # ------------------------------------------------------------------ ReplayParked
    def ReplayParked(
        self, request: persistent_pb2.ReplayParkedReq, context: grpc.ServicerContext
    ) -> persistent_pb2.ReplayParkedResp:
        self.guard("ReplayParked", context)
        options = request.options
        _, stream = wire.subscription_stream(options, context)
        stop_option = options.WhichOneof("stop_at_option")
        if stop_option is None:
            handler_exception(context)
        stop_at = options.stop_at if stop_option == "stop_at" else None
        group = options.group_name
        if stop_at is not None and stop_at < 0:
            fail(
                context,
                stream,
                group,
                "Cannot stop replaying parked message at a negative version.",
            )
        with self._lock:
            subscription = self._subscriptions.get(f"{stream}::{group}")
            if subscription is None:
                not_found(context, stream, group)
            subscription.replay_parked(stop_at)
        return persistent_pb2.ReplayParkedResp()

    # ------------------------------------------------------------------ RestartSubsystem
    def RestartSubsystem(
        self, request: shared_pb2.Empty, context: grpc.ServicerContext
    ) -> shared_pb2.Empty:
        self.guard("RestartSubsystem", context)
        with self._lock:
            # Stop, shut every group down (consumers are dropped), load the configuration again;
            # groups resume from their checkpoints.
            for subscription in self._subscriptions.values():
                subscription.shutdown()
            self._load_configuration()
            for subscription in self._subscriptions.values():
                subscription.fill()
        return shared_pb2.Empty()

    # ------------------------------------------------------------------ Read
    def Read(
        self, request_iterator: Iterator[persistent_pb2.ReadReq], context: grpc.ServicerContext
    ) -> Iterator[persistent_pb2.ReadResp]:
        self.guard("Read", context)
        first = next(request_iterator, None)
        if first is None:
            return
        if first.WhichOneof("content") != "options":
            handler_exception(context)
        options = first.options
        _, stream = wire.subscription_stream(options, context)
        group = options.group_name
        metadata = wire.metadata(context)
        client = Client(
            f"{stream}::{group}",
            options.buffer_size,
            wire.username(metadata) or "anonymous",
            metadata.get("connection-name", "<unknown>"),
            options.uuid_option.WhichOneof("content") != "string",
        )
        with self._lock:
            # ConnectToPersistentSubscription
            subscription = self._subscriptions.get(client.key)
            if subscription is None:
                not_found(context, stream, group)
            if subscription.max_clients_reached:
                max_subscribers(context, stream, group)
            subscription.connect(client)
        if not context.add_callback(lambda: self._disconnect(client)):
            self._disconnect(client)  # the call has already ended
            return
        # Acks and nacks arrive on the request stream while events are written to the
        # response stream: one reader thread per call, ending with the call (so bounded by the
        # server's worker pool, which runs this generator).
        threading.Thread(
            target=self._pump_requests,
            args=(request_iterator, client),
            name="esdb-emu-persistent-acks",
            daemon=True,
        ).start()
        try:
            yield persistent_pb2.ReadResp(
                subscription_confirmation=persistent_pb2.ReadResp.SubscriptionConfirmation(
                    subscription_id=client.key
                )
            )
            while context.is_active():
                items, dropped = client.take(0.25)
                for message, retry_count in items:
                    yield wire.read_resp(message, retry_count, client.structured_ids)
                if dropped is not None:
                    code, details, trailing = dropped
                    abort(context, code, details, trailing)
        finally:
            self._disconnect(client)

    def _disconnect(self, client: Client) -> None:
        with self._lock:
            subscription = client.subscription
            if subscription is not None:
                subscription.remove(client, drop=False)
        client.wake()

    def _pump_requests(self, requests: Iterator[persistent_pb2.ReadReq], client: Client) -> None:
        # Grpc/...Read.cs PumpRequestStream: acks and nacks go to the group by its id; anything
        # malformed ends the pumping silently.
        try:
            for request in requests:
                kind = request.WhichOneof("content")
                if kind == "ack":
                    ids = [wire.uuid_text(i) for i in request.ack.ids]
                    with self._lock:
                        subscription = self._subscriptions.get(client.key)
                        if subscription is not None:
                            subscription.ack(ids)
                elif kind == "nack":
                    nack = request.nack
                    if nack.action not in range(5):
                        return
                    ids = [wire.uuid_text(i) for i in nack.ids]
                    with self._lock:
                        subscription = self._subscriptions.get(client.key)
                        if subscription is not None:
                            subscription.nack(ids, nack.action, nack.reason)
                else:
                    return
        except (grpc.RpcError, ValueError):
            return
        except Exception:  # the call ended under us (cancelled, server stopping)
            log.debug("persistent subscription request stream ended", exc_info=True)

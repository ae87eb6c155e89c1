"""Persistent subscriptions, projections and gossip, as typed models.

`Admin` is mixed into `EventStore` (core/eventstore/client.py): it uses the store's esdbclient
client, retries (`_call`) and timeout.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from esdbclient import exceptions as esdb
from esdbclient.common import handle_rpc_error
from esdbclient.protos.Grpc import projections_pb2, projections_pb2_grpc, shared_pb2
from pydantic import BaseModel, ConfigDict

import core.eventstore.internals as internals
from core.errors import PermanentError
from core.model import Member

if TYPE_CHECKING:
    from esdbclient import EventStoreDBClient

T = TypeVar("T")


class GroupSettings(BaseModel):
    """A persistent subscription group's settings, as create/update take them (seconds)."""

    model_config = ConfigDict(frozen=True)

    resolve_links: bool
    consumer_strategy: str
    message_timeout: float  # seconds
    max_retry_count: int
    min_checkpoint_count: int
    max_checkpoint_count: int
    checkpoint_after: float  # seconds (negative in GetInfo: never by time)
    max_subscriber_count: int
    live_buffer_size: int
    read_batch_size: int
    history_buffer_size: int
    extra_statistics: bool

    @classmethod
    def from_info(cls, info: GroupSettings) -> GroupSettings:
        """The settings to create a group like `info` elsewhere: "never by time" is reported
        by GetInfo as int.MinValue milliseconds and given back as 0."""
        values = {name: getattr(info, name) for name in GroupSettings.model_fields}
        values["checkpoint_after"] = max(0.0, info.checkpoint_after)
        return GroupSettings(**values)


class SubscriptionInfo(GroupSettings):
    """One persistent subscription group, as the server's GetInfo reports it."""

    group_name: str
    event_source: str  # the stream, or "$all"
    start_from: str  # "C:0/P:0", "-1", "12"...
    last_checkpointed_event_position: str  # "" when never checkpointed

    @classmethod
    def of(cls, info: Any) -> SubscriptionInfo:
        """From esdbclient's SubscriptionInfo."""
        return cls(**{name: getattr(info, name) for name in cls.model_fields})


class ProjectionStats(BaseModel):
    """One projection's statistics."""

    model_config = ConfigDict(frozen=True)

    name: str
    mode: str  # Continuous, OneTime, Transient
    status: str  # Running, Stopped, Faulted, Aborted, ...
    state_reason: str
    position: str
    progress: float
    epoch: int  # the version of the projection it last reset at
    version: int

    @classmethod
    def of(cls, stats: Any) -> ProjectionStats:
        """From esdbclient's ProjectionStatistics or the protocol's StatisticsResp.Details
        (the same names but one: stateReason)."""
        reason = getattr(stats, "state_reason", None)
        return cls(
            name=stats.name,
            mode=stats.mode,
            status=stats.status,
            state_reason=reason if reason is not None else stats.stateReason,
            position=stats.position,
            progress=stats.progress,
            epoch=stats.epoch,
            version=stats.version,
        )


class Admin:
    """The administrative calls of a server (mixed into EventStore)."""

    _client: EventStoreDBClient
    timeout: float
    side: str

    if TYPE_CHECKING:  # EventStore's

        def _call(self, action: str, fn: Callable[[], T]) -> T: ...

        def _get_stream(self, stream: str, **kwargs: object) -> tuple[Any, ...]: ...

    def list_persistent_subscriptions(self) -> list[SubscriptionInfo]:
        """Every persistent subscription group."""
        return self._call(
            "list persistent subscriptions",
            lambda: [
                SubscriptionInfo.of(info)
                for info in self._client.list_subscriptions(timeout=self.timeout)
            ],
        )

    def persistent_subscription_info(
        self, group: str, stream: str | None
    ) -> SubscriptionInfo | None:
        """One group's info (stream None = `$all`), or None if it does not exist."""

        def read() -> SubscriptionInfo | None:
            try:
                info = self._client.get_subscription_info(
                    group, None if stream in (None, "$all") else stream, timeout=self.timeout
                )
            except esdb.NotFound:
                return None
            return SubscriptionInfo.of(info)

        return self._call(f"read persistent subscription {group!r}", read)

    def persistent_subscription_config(self) -> list[dict]:
        """The server's saved group entries (`$persistentSubscriptionConfig`): the only place
        a `$all` group's filter can be read from. [] if unreadable."""

        def read() -> list[dict]:
            try:
                recorded = self._get_stream(
                    "$persistentSubscriptionConfig",
                    backwards=True,
                    limit=1,
                    timeout=self.timeout,
                )
            except esdb.NotFound:
                return []
            for r in recorded:
                try:
                    config = json.loads(r.data)
                except (ValueError, UnicodeDecodeError):
                    return []
                entries = config.get("entries") if isinstance(config, dict) else None
                return [e for e in entries or [] if isinstance(e, dict)]
            return []

        return self._call("read the persistent subscription configuration", read)

    def save_persistent_subscription(
        self,
        group: str,
        stream: str,
        *,
        update: bool,
        start: int | None,
        settings: dict,
        filter_include: Sequence[str] = (),
        filter_exclude: Sequence[str] = (),
        filter_by_stream_name: bool = False,
    ) -> None:
        """Create (or update) a group on `stream` ("$all" for `$all`). `start` is the first
        position/revision delivered (inclusive): 0 the start, None the end. A `$all` filter is
        esdbclient's include/exclude patterns (none = no filter); an update keeps the filter."""
        kwargs = dict(settings)
        if start is None:
            kwargs["from_end"] = True
        elif start > 0:
            kwargs["commit_position" if stream == "$all" else "stream_position"] = start
        else:
            kwargs["from_end"] = False
        if stream == "$all":
            if update:
                fn = self._client.update_subscription_to_all
            else:
                fn = self._client.create_subscription_to_all
                kwargs["filter_include"] = list(filter_include)
                kwargs["filter_exclude"] = list(filter_exclude)
                kwargs["filter_by_stream_name"] = filter_by_stream_name
            self._call(
                f"save persistent subscription {group!r} to $all",
                lambda: fn(group, timeout=self.timeout, **kwargs),
            )
            return
        fn = (
            self._client.update_subscription_to_stream
            if update
            else self._client.create_subscription_to_stream
        )
        self._call(
            f"save persistent subscription {group!r} to {stream!r}",
            lambda: fn(group, stream, timeout=self.timeout, **kwargs),
        )

    def read_gossip(self) -> list[Member]:
        """The cluster's members as the node's gossip reports them (one leader for a single
        node). esdbclient exposes no server version or feature list: gossip is all there is."""
        states = {
            "NODE_STATE_LEADER": "leader",
            "NODE_STATE_FOLLOWER": "follower",
            "NODE_STATE_REPLICA": "readonlyreplica",
        }
        members = self._call("read gossip", lambda: self._client.read_gossip(timeout=self.timeout))
        return [Member(states.get(m.state, "other"), m.address, m.port) for m in members]

    # ------------------------------------------------------------------ projections
    def projection_statistics(self, name: str | None = None) -> list[ProjectionStats]:
        """The statistics of every projection (name None), or of one ([] if it does not
        exist). esdbclient asks only by name, so the list call goes over its channel."""
        if name is not None:

            def one() -> list[ProjectionStats]:
                try:
                    stats = self._client.get_projection_statistics(name=name, timeout=self.timeout)
                except esdb.NotFound:
                    return []
                return [ProjectionStats.of(stats)]

            return self._projection_call(f"read the statistics of projection {name!r}", one)
        channel = internals.channel(self._client)
        stub = projections_pb2_grpc.ProjectionsStub(channel)
        options = projections_pb2.StatisticsReq.Options(all=shared_pb2.Empty())

        def every() -> list[ProjectionStats]:
            try:
                responses = stub.Statistics(
                    projections_pb2.StatisticsReq(options=options),
                    timeout=self.timeout,
                    metadata=(*internals.call_metadata(self._client), ("requires-leader", "true")),
                    credentials=internals.call_credentials(self._client),
                )
                return [ProjectionStats.of(r.details) for r in responses]
            except grpc.RpcError as e:
                raise handle_rpc_error(e) from None

        return self._projection_call("list projections", every)

    def create_projection(self, name: str, query: str, *, emit: bool, track: bool) -> None:
        """A continuous projection; the server starts it at once (gRPC cannot create one
        stopped)."""
        self._projection_call(
            f"create projection {name!r}",
            lambda: self._client.create_projection(
                name=name,
                query=query,
                emit_enabled=emit,
                track_emitted_streams=track,
                timeout=self.timeout,
            ),
        )

    def update_projection(self, name: str, query: str, *, emit: bool) -> None:
        self._projection_call(
            f"update projection {name!r}",
            lambda: self._client.update_projection(
                name, query=query, emit_enabled=emit, timeout=self.timeout
            ),
        )

    def disable_projection(self, name: str) -> None:
        self._projection_call(
            f"disable projection {name!r}",
            lambda: self._client.disable_projection(name, timeout=self.timeout),
        )

    def reset_projection(self, name: str) -> None:
        self._projection_call(
            f"reset projection {name!r}",
            lambda: self._client.reset_projection(name, timeout=self.timeout),
        )

    def _projection_call(self, action: str, fn: Callable[[], T]) -> T:
        def guarded() -> T:
            try:
                return fn()
            except esdb.EventStoreDBClientException as e:
                if internals.grpc_code(e) == grpc.StatusCode.UNIMPLEMENTED:
                    raise PermanentError(
                        f"{self.side}: {action}: the projections subsystem is not running",
                        hint="start the node with --run-projections=All (or System) to manage "
                        "projections",
                    ) from None
                raise

        return self._call(action, guarded)

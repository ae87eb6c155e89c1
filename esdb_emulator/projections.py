"""The `event_store.client.projections.Projections` gRPC service.

Written from the server (kurrent-io/KurrentDB src/KurrentDB.Projections.Core/Services/Grpc/
ProjectionManagement.*.cs, here "Grpc/<file>", and Services/Management/ProjectionManager.cs and
ManagedProjection.cs) and esdbclient's projections client.

As the real server does it:
- Definitions live in the log: `$projections-$all` holds `$ProjectionsInitialized`, then one
  `$ProjectionCreated` (data: the name, UTF-8) per persisted projection and
  `$ProjectionDeleted` on delete (ProjectionManager.PostNewProjections / DeleteProjection);
  each projection's definition is a `$ProjectionUpdated` event in `$projections-<name>`
  (ManagedProjection.PersistedState as camelCase JSON, enums as strings, `false` for the
  non-nullable `enabled` left out: Common/Utils/Json.cs). So a snapshot keeps them, and
  RestartSubsystem reloads them from the log. Transient projections are never written.
- The five system projections are registered stopped (`enabled` false, emit on,
  handler `native:...`) the first time the subsystem starts (CreateSystemProjections).
- Create starts the projection (Command.Post with enabled = true); a one-time projection gets a
  GUID name; Disable/Enable/Reset/Update rewrite the definition with the next version.
- Errors: an unknown name is NOT_FOUND "Projection '<name>' not found"; a duplicate name and
  every other refusal are UNKNOWN "Envelope callback expected Updated, received Conflict /
  OperationFailed instead" (Grpc/ProjectionManagement.cs UnknownMessage), which esdbclient
  turns into AlreadyExists / OperationFailed; deleting a running or a system projection is
  refused; tracking emitted streams without emit throws in the handler (UNKNOWN "Exception
  was thrown by handler.").

Deliberate differences:
- No JavaScript runs: State and Result answer `{}` (what the server answers for a projection
  that is not running), and statistics report no position or progress. A started projection
  reports status "Running", a disabled one "Stopped", an aborted one "Aborted" (servers >=
  21.10; "Stopped" again once the subsystem restarts, as the state is not persisted).
- The registry and the system projections are written on the first projections call rather
  than when the node starts, so emulators that never use projections keep their `$all`
  unchanged.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from esdbclient.protos.Grpc import projections_pb2, projections_pb2_grpc, shared_pb2
from google.protobuf import struct_pb2

from esdb_emulator.store import (
    ANY,
    JSON,
    OCTET_STREAM,
    ProposedEvent,
    Record,
    Store,
    StreamNotFound,
)

Guard = Callable[[str, grpc.ServicerContext], None]

REGISTRY_STREAM = "$projections-$all"  # ProjectionNamesBuilder.ProjectionsRegistrationStream
STREAM_PREFIX = "$projections-"  # ProjectionNamesBuilder.ProjectionsStreamPrefix
INITIALIZED = "$ProjectionsInitialized"
CREATED = "$ProjectionCreated"
DELETED = "$ProjectionDeleted"
UPDATED = "$ProjectionUpdated"

CONTINUOUS, ONE_TIME, TRANSIENT = "Continuous", "OneTime", "Transient"

# ProjectionManager.CreateSystemProjections: name -> (handler type, query/config).
_NATIVE = "native:EventStore.Projections.Core.Standard."
SYSTEM_PROJECTIONS: dict[str, tuple[str, str]] = {
    "$streams": (_NATIVE + "IndexStreams", ""),
    "$stream_by_category": (_NATIVE + "CategorizeStreamByPath", "first\r\n-"),
    "$by_category": (_NATIVE + "CategorizeEventsByStreamPath", "first\r\n-"),
    "$by_event_type": (_NATIVE + "IndexEventsByEventType", ""),
    "$by_correlation_id": (
        _NATIVE + "ByCorrelationId",
        '{"correlationIdProperty":"$correlationId"}',
    ),
}
# ProjectionConsts: CheckpointHandledThreshold, CheckpointAfterMs, MaxAllowedWritesInFlight...
_DEFAULTS = {
    "checkpointHandledThreshold": 4000,
    "checkpointUnhandledBytesThreshold": 10 * 1000 * 1000,
    "pendingEventsThreshold": 5000,
    "maxWriteBatchLength": 500,
}


@dataclass
class Projection:
    name: str
    query: str
    mode: str
    enabled: bool
    emit_enabled: bool
    track_emitted_streams: bool
    handler_type: str = "JS"
    checkpoints_disabled: bool = False
    run_as: dict = field(default_factory=lambda: {"name": "admin", "roles": ["$admins"]})
    version: int = -1
    epoch: int = -1
    projection_id: int = 0
    aborted: bool = False  # ManagedProjectionState.Aborted: in memory, not persisted

    def persisted_state(self) -> dict:
        """ManagedProjection.PersistedState as Json.ToJsonBytes writes it (defaults left out)."""
        state: dict[str, object] = {"handlerType": self.handler_type, "query": self.query}
        state["mode"] = self.mode
        if self.enabled:
            state["enabled"] = True
        state.update(
            emitEnabled=self.emit_enabled,
            checkpointsDisabled=self.checkpoints_disabled,
            trackEmittedStreams=self.track_emitted_streams,
            epoch=self.epoch,
            version=self.version,
            runAs=self.run_as,
        )
        state.update(_DEFAULTS)
        return state

    @classmethod
    def from_persisted(cls, name: str, state: dict, version: int, projection_id: int) -> Projection:
        return cls(
            name=name,
            query=str(state.get("query") or ""),
            mode=str(state.get("mode") or CONTINUOUS),
            enabled=bool(state.get("enabled", False)),
            emit_enabled=bool(state.get("emitEnabled") or False),
            track_emitted_streams=bool(state.get("trackEmittedStreams") or False),
            handler_type=str(state.get("handlerType") or "JS"),
            checkpoints_disabled=bool(state.get("checkpointsDisabled") or False),
            run_as=state.get("runAs") or {"name": "$system", "roles": ["$admins"]},
            version=int(state.get("version", version)),
            epoch=int(state.get("epoch", -1)),
            projection_id=projection_id,
        )


class ProjectionsService(projections_pb2_grpc.ProjectionsServicer):
    def __init__(self, store: Store, guard: Guard) -> None:
        self.store = store
        self.guard = guard
        self._lock = threading.RLock()
        self._projections: dict[str, Projection] | None = None  # None until first loaded

    # ------------------------------------------------------------------ the log
    def _loaded(self) -> dict[str, Projection]:
        with self._lock:
            if self._projections is None:
                self._projections = self._load()
            return self._projections

    def _load(self) -> dict[str, Projection]:
        registered: dict[str, int] = {}
        records = self._records(REGISTRY_STREAM)
        for record in records:
            name = record.data.decode("utf-8", "replace")
            # ProjectionManager.OnProjectionsListReadCompleted: id = event number (0 -> max - 1)
            if record.type == CREATED and name and name not in registered:
                registered[name] = record.revision or 2**31 - 2
            elif record.type == DELETED:
                registered.pop(name, None)
        projections: dict[str, Projection] = {}
        for name, projection_id in registered.items():
            definition = self._records(STREAM_PREFIX + name)
            if not definition:
                continue  # the server leaves it in Creating state; it is not usable
            last = definition[-1]
            try:
                state = json.loads(last.data)
            except ValueError:
                continue
            projections[name] = Projection.from_persisted(name, state, last.revision, projection_id)
        if not records:
            projections = self._initialize()
        return projections

    def _initialize(self) -> dict[str, Projection]:
        """First start: `$ProjectionsInitialized`, then the system projections, stopped."""
        self._append(REGISTRY_STREAM, INITIALIZED, b"", OCTET_STREAM)
        projections: dict[str, Projection] = {}
        for name, (handler, query) in SYSTEM_PROJECTIONS.items():
            projection = Projection(
                name=name,
                query=query,
                mode=CONTINUOUS,
                enabled=False,
                emit_enabled=True,
                track_emitted_streams=False,
                handler_type=handler,
                run_as={"name": "$system", "roles": ["$admins"]},
            )
            self._register(projection)
            projections[name] = projection
        return projections

    def _records(self, stream: str) -> list[Record]:
        try:
            return self.store.visible_records(stream)
        except StreamNotFound:
            return []

    def _append(self, stream: str, event_type: str, data: bytes, content_type: str) -> int:
        event = ProposedEvent(str(uuid.uuid4()), event_type, content_type, data)
        return self.store.append(stream, ANY, [event]).last_revision

    def _register(self, projection: Projection) -> None:
        revision = self._append(REGISTRY_STREAM, CREATED, projection.name.encode(), OCTET_STREAM)
        projection.projection_id = revision
        self._persist(projection)

    def _persist(self, projection: Projection) -> None:
        """Write the next `$ProjectionUpdated`; the server keeps version == its event number."""
        if projection.mode == TRANSIENT:
            projection.version += 1
            return
        projection.version = self._next_version(projection)
        data = json.dumps(projection.persisted_state(), indent=2).encode()
        self._append(STREAM_PREFIX + projection.name, UPDATED, data, JSON)

    def _next_version(self, projection: Projection) -> int:
        if projection.mode == TRANSIENT:
            return projection.version + 1
        existing = self._records(STREAM_PREFIX + projection.name)
        return existing[-1].revision + 1 if existing else 0

    # ------------------------------------------------------------------ helpers
    def _get(self, name: str, context: grpc.ServicerContext) -> Projection:
        projection = self._loaded().get(name)
        if projection is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Projection '{name}' not found")
        return projection

    @staticmethod
    def _refuse(context: grpc.ServicerContext, reply: str, expected: str = "Updated") -> None:
        context.abort(
            grpc.StatusCode.UNKNOWN,
            f"Envelope callback expected {expected}, received {reply} instead",
        )

    @staticmethod
    def _status(projection: Projection) -> str:
        if projection.enabled:
            return "Running"
        return "Aborted" if projection.aborted else "Stopped"

    def _details(self, projection: Projection) -> projections_pb2.StatisticsResp.Details:
        return projections_pb2.StatisticsResp.Details(
            name=projection.name,
            effectiveName=projection.name,
            mode=projection.mode,
            status=self._status(projection),
            epoch=projection.epoch,
            version=projection.version,
        )

    # ------------------------------------------------------------------ rpcs
    def Create(self, request, context):
        self.guard("Create", context)
        options = request.options
        mode_case = options.WhichOneof("mode")
        if mode_case == "continuous":
            name, mode = options.continuous.name, CONTINUOUS
            emit = options.continuous.emit_enabled
            if options.continuous.track_emitted_streams and not emit:
                # InvalidOperationException("EmitEnabled must be set to true to track ...")
                context.abort(grpc.StatusCode.UNKNOWN, "Exception was thrown by handler.")
            track = options.continuous.track_emitted_streams
        elif mode_case == "transient":
            name, mode, emit, track = options.transient.name, TRANSIENT, False, False
        elif mode_case == "one_time":
            name, mode, emit, track = str(uuid.uuid4()), ONE_TIME, False, False
        else:
            context.abort(grpc.StatusCode.UNKNOWN, "Exception was thrown by handler.")
        with self._lock:
            projections = self._loaded()
            if not name.strip():
                self._refuse(context, "OperationFailed")  # "Projection name is required"
            if name in projections:
                self._refuse(context, "Conflict")  # "Duplicate projection names : <name>"
            projection = Projection(
                name=name,
                query=options.query,
                mode=mode,
                enabled=True,
                emit_enabled=emit,
                track_emitted_streams=track,
                checkpoints_disabled=mode != CONTINUOUS,
            )
            if mode == TRANSIENT:
                projection.version = 0
            else:
                self._register(projection)
            projections[name] = projection
        return projections_pb2.CreateResp()

    def Update(self, request, context):
        self.guard("Update", context)
        options = request.options
        with self._lock:
            projection = self._get(options.name, context)
            projection.query = options.query
            if options.WhichOneof("emit_option") == "emit_enabled":
                projection.emit_enabled = options.emit_enabled
            self._persist(projection)
        return projections_pb2.UpdateResp()

    def Delete(self, request, context):
        self.guard("Delete", context)
        name = request.options.name
        with self._lock:
            projection = self._get(name, context)
            if name in SYSTEM_PROJECTIONS:
                # "We currently don't allow for the deletion of System Projections."
                self._refuse(context, "OperationFailed")
            if projection.enabled and projection.mode != TRANSIENT:
                # "Cannot delete a projection that hasn't been stopped or faulted."
                self._refuse(context, "OperationFailed")
            if projection.mode != TRANSIENT:
                self._append(REGISTRY_STREAM, DELETED, name.encode(), OCTET_STREAM)
            del self._loaded()[name]
        return projections_pb2.DeleteResp()

    def Statistics(self, request, context):
        self.guard("Statistics", context)
        options = request.options
        mode_case = options.WhichOneof("mode")
        with self._lock:
            if mode_case == "name" and options.name:
                selected = [self._get(options.name, context)]
            else:
                wanted = {"continuous": CONTINUOUS, "one_time": ONE_TIME, "transient": TRANSIENT}
                mode = wanted.get(mode_case or "")
                selected = [p for p in self._loaded().values() if mode is None or p.mode == mode]
            details = [self._details(p) for p in selected]
        for detail in details:
            yield projections_pb2.StatisticsResp(details=detail)

    def _set_enabled(
        self, name: str, enabled: bool, context: grpc.ServicerContext, *, abort: bool = False
    ) -> None:
        with self._lock:
            projection = self._get(name, context)
            if projection.enabled == enabled:
                return  # Enable of a running projection replies Updated without a write
            projection.enabled = enabled
            # ManagedProjection.Abort kills a running projection: Aborting, then Aborted; a
            # stopped one stays Stopped. Enabling it again runs it.
            projection.aborted = abort
            self._persist(projection)

    def Disable(self, request, context):
        # Grpc/ProjectionManagement.Disable.cs: write_checkpoint chooses Command.Disable,
        # otherwise Command.Abort (esdbclient's abort_projection).
        self.guard("Disable", context)
        abort = not request.options.write_checkpoint
        self._set_enabled(request.options.name, False, context, abort=abort)
        return projections_pb2.DisableResp()

    def Enable(self, request, context):
        self.guard("Enable", context)
        self._set_enabled(request.options.name, True, context)
        return projections_pb2.EnableResp()

    def Reset(self, request, context):
        self.guard("Reset", context)
        with self._lock:
            projection = self._get(request.options.name, context)
            # ManagedProjection.Reset: a new version, and epoch = version (checkpoints dropped)
            projection.epoch = self._next_version(projection)
            self._persist(projection)
        return projections_pb2.ResetResp()

    def State(self, request, context):
        self.guard("State", context)
        with self._lock:
            self._get(request.options.name, context)
        return projections_pb2.StateResp(state=_empty_object())

    def Result(self, request, context):
        self.guard("Result", context)
        with self._lock:
            self._get(request.options.name, context)
        return projections_pb2.ResultResp(result=_empty_object())

    def RestartSubsystem(self, request, context):
        self.guard("RestartSubsystem", context)
        with self._lock:
            # Persisted projections reload from the log; transient ones are forgotten.
            self._projections = None
            self._loaded()
        return shared_pb2.Empty()


def _empty_object() -> struct_pb2.Value:
    return struct_pb2.Value(struct_value=struct_pb2.Struct())

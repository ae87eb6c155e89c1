"""The emulator process: a gRPC server speaking EventStoreDB's client protocol.

with Emulator() as db:                       # plaintext, no auth, free port
    client = EventStoreDBClient(db.uri)

with Emulator(tls=True) as db:               # TLS (CA -> node certificate), admin/changeit
    client = EventStoreDBClient(db.uri)      # uri carries tlsCaFile=<the CA>
"""

from __future__ import annotations

import logging
import tempfile
from concurrent import futures
from pathlib import Path
from types import TracebackType

import grpc
from esdbclient.protos.Grpc import (
    gossip_pb2_grpc,
    persistent_pb2_grpc,
    projections_pb2_grpc,
    streams_pb2_grpc,
)

# Submodules by name: `from esdb_emulator import ...` would import this module's own package.
import esdb_emulator.snapshot as snapshot
import esdb_emulator.versions as versions
from core.protocol import serverfeatures_pb2_grpc
from core.protocol.kurrentdb.protocol.v2.streams import streams_pb2_grpc as v2_streams_pb2_grpc
from esdb_emulator.faults import FaultConfig, FaultInjector
from esdb_emulator.features import ServerFeaturesService
from esdb_emulator.gossip import GossipService
from esdb_emulator.headers import HeaderGuard
from esdb_emulator.multi_append import MultiStreamAppendService
from esdb_emulator.persistent import PersistentSubscriptionsService
from esdb_emulator.projections import ProjectionsService
from esdb_emulator.security import (
    DEFAULT_USERS,
    Authenticator,
    Certificate,
    generate_ca,
    generate_self_signed,
    issue_node_certificate,
    load_or_create,
)
from esdb_emulator.store import Store
from esdb_emulator.streams import StreamsService
from esdb_emulator.unimplemented import Unimplemented

log = logging.getLogger(__name__)

# The real server accepts large messages (an append of up to MaxAppendSize plus framing).
_MESSAGE_LIMIT = 64 * 1024 * 1024
_STOP_WAIT_SECONDS = 5.0
# HTTP/2 keepalive as a KurrentDB node has it (Program.cs: Kestrel's Http2.KeepAlivePingDelay /
# KeepAlivePingTimeout = KeepAliveInterval / KeepAliveTimeout, 10 s each): the node pings a
# quiet connection every 10 s, and it answers every client ping (Kestrel has no ping-strike
# policy; gRPC's default would close a connection pinged more often than every 5 minutes with
# GOAWAY "too_many_pings", and clients ping every 10 s: issue 17, finding 1).
KEEPALIVE_INTERVAL_MS = 10_000
KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", KEEPALIVE_INTERVAL_MS),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 0),
    ("grpc.http2.max_ping_strikes", 0),
)


def _certificate(host: str, cert_dir: Path | None, self_signed: bool) -> Certificate:
    """A node certificate signed by a CA (kept in `cert_dir` across restarts when given), as
    production nodes have; `self_signed`: a dev-mode node's self-signed one."""
    names = (host, "localhost", "127.0.0.1")
    if self_signed:
        return generate_self_signed(names)
    if cert_dir is not None:
        return load_or_create(cert_dir, names)
    return issue_node_certificate(generate_ca(), names)


class Emulator:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: bool = False,
        users: dict[str, str] | None = None,
        faults: FaultConfig | None = None,
        snapshot_path: str | Path | None = None,
        seed_system_events: bool = True,
        max_workers: int = 128,
        certificate: Certificate | None = None,
        run_projections: bool = True,
        multi_append: bool | None = None,  # False: as server_version="24.10" (older name)
        cert_dir: str | Path | None = None,
        self_signed: bool = False,
        server_version: str | None = None,  # "24.10", "25.1" (default) or "26.1"
    ) -> None:
        self.host = host
        self.requested_port = port
        self.port = port
        self.tls = tls
        # A secure node requires credentials; an insecure one (like `--insecure`) has no auth.
        self.auth = Authenticator(users if users is not None else (DEFAULT_USERS if tls else None))
        self.faults = FaultInjector(faults)
        self.snapshot_path = Path(snapshot_path) if snapshot_path else None
        self.store = Store(seed_system_events=seed_system_events)
        self.max_workers = max_workers
        if server_version is None:
            server_version = versions.DEFAULT_VERSION if multi_append in (None, True) else "24.10"
        self.version = versions.server_version(server_version)
        if multi_append is not None and multi_append != self.version.append_session:
            raise ValueError(
                f"multi_append={multi_append} contradicts server_version={server_version!r}"
            )
        self.multi_append = self.version.append_session
        self.run_projections = run_projections
        self.cert_dir = Path(cert_dir) if cert_dir else None
        self.certificate = certificate or (
            _certificate(host, self.cert_dir, self_signed) if tls else None
        )
        self._ca_dir: tempfile.TemporaryDirectory[str] | None = None
        self.ca_file: str | None = None
        self._server: grpc.Server | None = None
        self._services: list[object] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Emulator:
        if self._server is not None:
            raise RuntimeError("emulator already started")
        if self.snapshot_path and self.snapshot_path.exists():
            count = snapshot.load(self.store, self.snapshot_path)
            log.info("loaded %d records from %s", count, self.snapshot_path)
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="esdb-emu"),
            interceptors=[HeaderGuard()],
            options=[
                ("grpc.max_receive_message_length", _MESSAGE_LIMIT),
                ("grpc.max_send_message_length", _MESSAGE_LIMIT),
                ("grpc.so_reuseport", 0),
                *KEEPALIVE_OPTIONS,
            ],
        )
        address = f"{self.host}:{self.requested_port}"
        if self.tls:
            assert self.certificate is not None
            credentials = grpc.ssl_server_credentials(
                [(self.certificate.key_pem, self.certificate.cert_pem)]
            )
            self.port = server.add_secure_port(address, credentials)
            kept = self.cert_dir / "ca.crt" if self.cert_dir else None
            if kept is not None and kept.read_bytes() == self.certificate.trust_pem:
                self.ca_file = str(kept)
            else:
                self._ca_dir = tempfile.TemporaryDirectory(prefix="esdb-emulator-")
                ca = Path(self._ca_dir.name) / "ca.pem"
                ca.write_bytes(self.certificate.trust_pem)
                self.ca_file = str(ca)
        else:
            self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot bind the emulator to {address}")
        streams = StreamsService(self.store, self.guard, self.faults, self.auth.is_anonymous)
        persistent = PersistentSubscriptionsService(self.store, self.guard)
        gossip = GossipService(self.host, self.port, self.guard_anonymous)
        streams_pb2_grpc.add_StreamsServicer_to_server(streams, server)
        persistent_pb2_grpc.add_PersistentSubscriptionsServicer_to_server(persistent, server)
        gossip_pb2_grpc.add_GossipServicer_to_server(gossip, server)
        self._services = [streams, persistent, gossip]
        features = ServerFeaturesService(
            self.guard_anonymous, self.version, projections=self.run_projections
        )
        serverfeatures_pb2_grpc.add_ServerFeaturesServicer_to_server(features, server)
        served = [
            "event_store.client.streams.Streams",
            "event_store.client.persistent_subscriptions.PersistentSubscriptions",
            "event_store.client.gossip.Gossip",
            "event_store.client.server_features.ServerFeatures",
        ]
        if self.version.append_session:
            v2_streams = MultiStreamAppendService(self.store, self.guard, self.faults, self.version)
            v2_streams_pb2_grpc.add_StreamsServiceServicer_to_server(v2_streams, server)
            served.append("kurrentdb.protocol.v2.streams.StreamsService")
        if self.run_projections:  # like --run-projections=None, the service is absent when off
            projections = ProjectionsService(self.store, self.guard)
            projections_pb2_grpc.add_ProjectionsServicer_to_server(projections, server)
            self._services.append(projections)
            served.append("event_store.client.projections.Projections")
        server.add_generic_rpc_handlers((Unimplemented(served),))
        server.start()
        self._server = server
        log.info("esdb emulator listening on %s:%d (tls=%s)", self.host, self.port, self.tls)
        return self

    def stop(self, grace: float | None = 0.5) -> None:
        if self._server is None:
            return
        # Bounded: a call that cannot end (it once could: esdb_emulator.headers) must not
        # hang the process that stops the emulator.
        if not self._server.stop(grace).wait((grace or 0.0) + _STOP_WAIT_SECONDS):
            log.warning("emulator on %s stopped with calls still running", self.target)
        self._server = None
        for service in self._services:
            close = getattr(service, "close", None)
            if close:
                close()
        if self.snapshot_path:
            snapshot.save(self.store, self.snapshot_path)
        if self._ca_dir is not None:
            self._ca_dir.cleanup()
            self._ca_dir = None
            self.ca_file = None

    def save_snapshot(self, path: str | Path | None = None) -> int:
        target = path or self.snapshot_path
        if target is None:
            raise ValueError("no snapshot path: pass one or start the emulator with snapshot_path")
        return snapshot.save(self.store, target)

    def wait(self) -> None:
        if self._server is not None:
            self._server.wait_for_termination()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ per call
    def guard(self, method: str, context: grpc.ServicerContext) -> None:
        # BatchAppend authorizes each write itself and answers Status.AccessDenied in the
        # response (Streams.BatchAppend.cs Receive: CheckAccessAsync per request).
        self.auth.check(context, allow_anonymous=method == "BatchAppend")
        self.faults.before_call(method, context, (self.host, self.port))

    def guard_anonymous(self, method: str, context: grpc.ServicerContext) -> None:
        # Gossip is readable without credentials, as on a real node; bad credentials are still
        # refused, as the real server authenticates every gRPC call first.
        self.auth.check(context, allow_anonymous=True)
        self.faults.before_call(method, context, (self.host, self.port))

    # ------------------------------------------------------------------ addresses
    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def connection_string(
        self, *, discover: bool = False, username: str | None = None, password: str | None = None
    ) -> str:
        scheme = "esdb+discover" if discover else "esdb"
        credentials = ""
        if self.auth.enabled:
            user = username or next(iter(DEFAULT_USERS))
            secret = password if password is not None else DEFAULT_USERS.get(user, "")
            credentials = f"{user}:{secret}@"
        query = f"?tlsCaFile={self.ca_file}" if self.tls else "?Tls=false"
        return f"{scheme}://{credentials}{self.target}{query}"

    @property
    def uri(self) -> str:
        return self.connection_string()

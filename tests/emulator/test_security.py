"""TLS, basic authentication and gossip discovery.

Reference behaviour: the server's AuthenticationMiddleware.HandleAsGrpcAsync (bad credentials:
UNAUTHENTICATED "Unauthenticated"), RpcExceptions.AccessDenied / Status.AccessDenied (anonymous
callers; ClusterVNodeOptions.AllowAnonymousStreamAccess defaults to false), esdbclient
tests/test_client.py (test_gossip_read, TestRootCertificatesAreOptional) and esdbclient's
ConnectionSpec (a TLS URI needs a username and password).
"""

from __future__ import annotations

import uuid

import grpc
import pytest
from esdbclient import EventStoreDBClient, NewEvent, StreamState
from esdbclient.exceptions import (
    AccessDeniedError,
    DiscoveryFailed,
    GrpcError,
    ServiceUnavailable,
    SSLError,
)
from esdbclient.gossip import NODE_STATE_LEADER
from esdbclient.protos.Grpc import shared_pb2, streams_pb2, streams_pb2_grpc

from esdb_emulator import Emulator


def ev() -> NewEvent:
    return NewEvent(type="OrderCreated", data=b"{}")


def new_stream() -> str:
    return f"order-{uuid.uuid4()}"


def grpc_code(error: GrpcError) -> grpc.StatusCode:
    rpc_error = error.args[0]
    assert isinstance(rpc_error, grpc.Call), error
    return rpc_error.code()


# --------------------------------------------------------------------------- TLS


def test_tls_with_generated_certificate(
    tls_emulator: Emulator, tls_client: EventStoreDBClient
) -> None:
    assert tls_emulator.ca_file is not None
    assert f"tlsCaFile={tls_emulator.ca_file}" in tls_emulator.uri
    assert tls_emulator.uri.startswith("esdb://admin:changeit@")
    stream = new_stream()
    position = tls_client.append_to_stream(
        stream, current_version=StreamState.NO_STREAM, events=[ev()]
    )
    assert tls_client.get_stream(stream)[0].commit_position == position
    assert tls_client.get_commit_position() == position
    subscription = tls_client.subscribe_to_stream(stream, timeout=5)
    assert next(iter(subscription)).stream_name == stream
    subscription.stop()


def test_tls_with_root_certificates_argument(tls_emulator: Emulator) -> None:
    assert tls_emulator.certificate is not None
    client = EventStoreDBClient(
        f"esdb://admin:changeit@{tls_emulator.target}",
        root_certificates=tls_emulator.certificate.cert_pem,
    )
    try:
        assert client.get_commit_position() == 0
    finally:
        client.close()


def test_tls_without_the_ca_fails(tls_emulator: Emulator) -> None:
    # esdbclient TestRootCertificatesAreOptional.test_tls_true_no_root_certificates: the
    # self-signed certificate is not trusted without tlsCaFile -> SSLError.
    client = EventStoreDBClient(f"esdb://admin:changeit@{tls_emulator.target}")
    try:
        with pytest.raises(SSLError):
            client.get_commit_position(timeout=5)
    finally:
        client.close()


def test_plaintext_client_against_tls_server_fails(tls_emulator: Emulator) -> None:
    client = EventStoreDBClient(f"esdb://admin:changeit@{tls_emulator.target}?Tls=false")
    try:
        with pytest.raises(ServiceUnavailable):
            client.get_commit_position(timeout=5)
    finally:
        client.close()


def test_tls_client_against_plaintext_server_fails(emulator: Emulator) -> None:
    client = EventStoreDBClient(f"esdb://admin:changeit@{emulator.target}")
    try:
        with pytest.raises(ServiceUnavailable):
            client.get_commit_position(timeout=5)
    finally:
        client.close()


# -------------------------------------------------------------------- credentials


def test_wrong_password_is_unauthenticated(tls_emulator: Emulator) -> None:
    client = EventStoreDBClient(tls_emulator.connection_string(password="wrong"))
    try:
        with pytest.raises(GrpcError) as info:
            client.get_commit_position()
        assert grpc_code(info.value) == grpc.StatusCode.UNAUTHENTICATED
        assert info.value.args[0].details() == "Unauthenticated"
        with pytest.raises(GrpcError) as info:
            client.append_to_stream(new_stream(), current_version=StreamState.ANY, events=[ev()])
        assert grpc_code(info.value) == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(GrpcError):
            list(client.read_all())
        # Authentication runs before every call, gossip included.
        with pytest.raises(GrpcError):
            client.read_gossip()
    finally:
        client.close()
    assert len(tls_emulator.store) == 3  # nothing was written


def test_unknown_user_is_unauthenticated(tls_emulator: Emulator) -> None:
    client = EventStoreDBClient(
        tls_emulator.connection_string(username="mallory", password="changeit")
    )
    try:
        with pytest.raises(GrpcError) as info:
            client.get_commit_position()
        assert grpc_code(info.value) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        client.close()


def test_tls_uri_without_credentials_is_refused_by_esdbclient(tls_emulator: Emulator) -> None:
    # esdbclient ConnectionSpec: "Username and password are required" when Tls is on.
    with pytest.raises(ValueError, match="Username and password are required"):
        EventStoreDBClient(f"esdb://{tls_emulator.target}?tlsCaFile={tls_emulator.ca_file}")


def test_no_credentials_is_access_denied(
    tls_emulator: Emulator, tls_client: EventStoreDBClient
) -> None:
    # A call without credentials runs as the anonymous user, which may not touch streams:
    # Read/Append/Delete raise RpcExceptions.AccessDenied (PERMISSION_DENIED "Access Denied");
    # BatchAppend answers Status.AccessDenied in its response, which esdbclient raises as
    # AccessDeniedError. esdbclient's service objects take `credentials=None` per call.
    stream = new_stream()
    with pytest.raises(GrpcError) as info:
        list(tls_client.streams.read(commit_position=None, credentials=None))
    assert grpc_code(info.value) == grpc.StatusCode.PERMISSION_DENIED
    assert info.value.args[0].details() == "Access Denied"
    with pytest.raises(GrpcError) as info:
        tls_client.streams.append(stream, StreamState.ANY, [ev()], credentials=None)
    assert grpc_code(info.value) == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(AccessDeniedError):
        tls_client.streams.batch_append(stream, StreamState.ANY, [ev()], credentials=None)
    with pytest.raises(GrpcError) as info:
        tls_client.streams.delete(stream, StreamState.ANY, credentials=None)
    assert grpc_code(info.value) == grpc.StatusCode.PERMISSION_DENIED
    # Gossip stays readable anonymously (discovery happens before any user call).
    assert len(tls_client.gossip.read(credentials=None)) == 1
    assert len(tls_emulator.store) == 3


def test_no_credentials_on_a_raw_channel(tls_emulator: Emulator) -> None:
    assert tls_emulator.certificate is not None
    credentials = grpc.ssl_channel_credentials(root_certificates=tls_emulator.certificate.cert_pem)
    options = streams_pb2.ReadReq.Options(
        read_direction=streams_pb2.ReadReq.Options.Forwards,
        count=10,
        uuid_option=streams_pb2.ReadReq.Options.UUIDOption(string=shared_pb2.Empty()),
        no_filter=shared_pb2.Empty(),
    )
    options.all.start.CopyFrom(shared_pb2.Empty())
    with grpc.secure_channel(tls_emulator.target, credentials) as channel:
        stub = streams_pb2_grpc.StreamsStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Read(streams_pb2.ReadReq(options=options), timeout=5))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert dict(info.value.trailing_metadata())["exception"] == "access-denied"


def test_custom_users() -> None:
    with Emulator(tls=True, users={"ops": "s3cret"}) as db:
        good = EventStoreDBClient(db.connection_string(username="ops", password="s3cret"))
        bad = EventStoreDBClient(db.connection_string(username="admin", password="changeit"))
        try:
            assert good.get_commit_position() == 0
            with pytest.raises(GrpcError):
                bad.get_commit_position()
        finally:
            good.close()
            bad.close()


def test_plaintext_emulator_has_no_auth(emulator: Emulator, client: EventStoreDBClient) -> None:
    # Like `--insecure`: no TLS and no authentication; credentials in the URI are not sent
    # (esdbclient only sends call credentials when Tls is on).
    assert not emulator.auth.enabled
    assert emulator.uri == f"esdb://{emulator.target}?Tls=false"
    other = EventStoreDBClient(f"esdb://admin:wrong@{emulator.target}?Tls=false")
    try:
        assert other.get_commit_position() == 0
    finally:
        other.close()


# ------------------------------------------------------------------------ gossip


def test_gossip_read(emulator: Emulator, client: EventStoreDBClient) -> None:
    # esdbclient test_gossip_read (cluster size 1).
    members = client.read_gossip()
    assert len(members) == 1
    assert members[0].state == NODE_STATE_LEADER
    assert members[0].address == emulator.host
    assert members[0].port == emulator.port


def test_gossip_read_over_tls(tls_emulator: Emulator, tls_client: EventStoreDBClient) -> None:
    members = tls_client.read_gossip()
    assert [(m.state, m.address, m.port) for m in members] == [
        (NODE_STATE_LEADER, tls_emulator.host, tls_emulator.port)
    ]


@pytest.mark.parametrize("tls", [False, True])
def test_discover_scheme(tls: bool) -> None:
    # esdb+discover:// reads gossip first, then uses the leader.
    with Emulator(tls=tls) as db:
        uri = db.connection_string(discover=True)
        assert uri.startswith("esdb+discover://")
        client = EventStoreDBClient(uri)
        try:
            assert client.connection_target == db.target
            stream = new_stream()
            client.append_to_stream(stream, current_version=StreamState.NO_STREAM, events=[ev()])
            assert len(client.get_stream(stream)) == 1
        finally:
            client.close()


def test_multi_target_uri_uses_gossip(emulator: Emulator) -> None:
    # Several targets in an esdb:// URI also go through gossip discovery.
    client = EventStoreDBClient(f"esdb://{emulator.target},{emulator.target}?Tls=false")
    try:
        assert client.connection_target == emulator.target
        assert client.get_commit_position() == 0
    finally:
        client.close()


def test_discovery_fails_when_gossip_is_unavailable(emulator: Emulator) -> None:
    emulator.faults.update(unavailable_next=100, methods={"Gossip.Read"})
    with pytest.raises(DiscoveryFailed):
        EventStoreDBClient(
            emulator.connection_string(discover=True)
            + "&MaxDiscoverAttempts=2&DiscoveryInterval=10"
        )
    assert emulator.faults.injected == {"unavailable": 2}

"""`--tls`: a CA and a node certificate it signed, as production nodes have (issue 17, finding 2).

Production nodes (es-gencert-cli, Event Store Cloud) present an end-entity certificate signed by
a CA that clients trust through tlsCaFile. The emulator used to present a self-signed CA
certificate as its own, which rustls/webpki-based clients refuse (CaUsedAsEndEntity): reads
failed with UNAVAILABLE in those clients while OpenSSL-based ones (esdbclient) accepted it.
The strict verifier here is cryptography's x509.verification (a webpki-style RFC 5280 policy
that refuses a CA certificate as the end entity); the dev-mode self-signed certificate remains
available (`self_signed=True`) and that verifier refuses it, so these checks can fail.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509 import verification
from esdbclient import EventStoreDBClient, NewEvent, StreamState

from esdb_emulator import Emulator


def presented_certificate(db: Emulator, server_name: str = "localhost") -> x509.Certificate:
    """The certificate the emulator presents in a TLS handshake (verified by OpenSSL with the
    connection string's tlsCaFile)."""
    assert db.ca_file is not None
    context = ssl.create_default_context(cafile=db.ca_file)
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((db.host, db.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def strict_verify(db: Emulator, leaf: x509.Certificate, name: verification.Subject) -> None:
    assert db.ca_file is not None
    roots = x509.load_pem_x509_certificates(Path(db.ca_file).read_bytes())
    verifier = (
        verification.PolicyBuilder().store(verification.Store(roots)).build_server_verifier(name)
    )
    verifier.verify(leaf, [])


def test_tls_presents_a_node_certificate_signed_by_the_ca(tls_emulator: Emulator) -> None:
    leaf = presented_certificate(tls_emulator)
    for name in (
        verification.DNSName("localhost"),
        verification.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ):
        strict_verify(tls_emulator, leaf, name)  # raises VerificationError otherwise
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert tls_emulator.ca_file is not None
    ca = x509.load_pem_x509_certificate(Path(tls_emulator.ca_file).read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.issuer == ca.subject != leaf.subject
    # And the official client reads and writes through it.
    client = EventStoreDBClient(tls_emulator.uri)
    try:
        client.append_to_stream(
            "tls-1", current_version=StreamState.NO_STREAM, events=NewEvent("A", b"{}")
        )
        assert [e.type for e in client.get_stream("tls-1")] == ["A"]
    finally:
        client.close()


def test_the_dev_mode_self_signed_certificate_is_refused_by_a_strict_client() -> None:
    with Emulator(tls=True, self_signed=True) as db:
        leaf = presented_certificate(db)  # OpenSSL accepts it ...
        with pytest.raises(verification.VerificationError):  # ... webpki-style clients do not
            strict_verify(db, leaf, verification.DNSName("localhost"))


def test_cert_dir_keeps_the_ca_and_node_certificate_across_restarts(tmp_path: Path) -> None:
    with Emulator(tls=True, cert_dir=tmp_path) as first:
        first_leaf = presented_certificate(first)
        first_uri = first.uri
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ca.crt",
        "ca.key",
        "node.crt",
        "node.key",
    ]
    assert (tmp_path / "ca.key").stat().st_mode & 0o077 == 0
    assert (tmp_path / "node.key").stat().st_mode & 0o077 == 0
    with Emulator(tls=True, cert_dir=tmp_path, port=first.port) as second:
        assert presented_certificate(second) == first_leaf
        assert second.ca_file == str(tmp_path / "ca.crt")
        client = EventStoreDBClient(first_uri)  # the first run's connection string still works
        try:
            client.append_to_stream(
                "kept", current_version=StreamState.ANY, events=NewEvent("A", b"{}")
            )
        finally:
            client.close()


def test_cert_dir_reissues_the_node_certificate_for_a_new_name(tmp_path: Path) -> None:
    with Emulator(tls=True, cert_dir=tmp_path) as first:
        first_leaf = presented_certificate(first)
    ca = (tmp_path / "ca.crt").read_bytes()
    with Emulator("127.0.0.2", tls=True, cert_dir=tmp_path) as second:
        leaf = presented_certificate(second, server_name="localhost")
        assert leaf != first_leaf
        strict_verify(second, leaf, verification.IPAddress(ipaddress.ip_address("127.0.0.2")))
    assert (tmp_path / "ca.crt").read_bytes() == ca

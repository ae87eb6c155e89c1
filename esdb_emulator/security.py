"""TLS certificates and basic authentication for the emulator.

Like EventStoreDB: a secure node requires TLS and credentials; `--insecure` turns off both. The
node presents a certificate signed by a CA (es-gencert-cli's layout: ca.crt/ca.key,
node.crt/node.key), which clients trust through tlsCaFile; a self-signed certificate (its own
CA, as a dev-mode node's) remains available, though webpki-based clients refuse it.
Bad credentials are rejected as UNAUTHENTICATED "Unauthenticated" for every call (the real
server's AuthenticationMiddleware) and a call without credentials runs as anonymous, which the
handlers refuse with PERMISSION_DENIED "Access Denied" (RpcExceptions.AccessDenied).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hmac
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_USERS = {"admin": "changeit"}


@dataclass(frozen=True)
class Certificate:
    """A server certificate (chain) and its key; `ca_pem` is what clients trust (tlsCaFile)."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes | None = None  # None: a self-signed certificate is its own trust anchor

    @property
    def trust_pem(self) -> bytes:
        return self.ca_pem or self.cert_pem


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _alt_names(hostnames: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hostnames):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


def generate_self_signed(hostnames: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Certificate:
    """A self-signed certificate (its own CA) for the names: a dev-mode node's. Strict clients
    (rustls/webpki) refuse it as the server's certificate (CaUsedAsEndEntity)."""
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "esdb-emulator")])
    cert = (
        _builder(name, name, key, days=30)
        .add_extension(_alt_names(hostnames), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Certificate(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


@dataclass(frozen=True)
class CertificateAuthority:
    cert_pem: bytes
    key_pem: bytes


def generate_ca() -> CertificateAuthority:
    """A root CA like the one `es-gencert-cli create-ca` makes (10 years, signs certificates)."""
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "esdb-emulator CA")])
    cert = (
        _builder(name, name, key, days=3650)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue_node_certificate(
    ca: CertificateAuthority, hostnames: tuple[str, ...], days: int = 365
) -> Certificate:
    """A node certificate signed by `ca`, as `es-gencert-cli create-node` makes it: an end
    entity (not a CA) for server and client auth, with the node's names as SANs."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eventstoredb-node")])
    cert = (
        _builder(name, ca_cert.subject, key, days=days)
        .add_extension(_alt_names(hostnames), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return Certificate(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key), ca.cert_pem)


def certificate_names(cert_pem: bytes) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(n) for n in san.get_values_for_type(x509.DNSName)} | {
        str(n) for n in san.get_values_for_type(x509.IPAddress)
    }


def load_or_create(cert_dir: Path, hostnames: tuple[str, ...]) -> Certificate:
    """The CA and node certificate kept in `cert_dir` (ca.crt/ca.key, node.crt/node.key, the
    layout of es-gencert-cli), created when absent; the node certificate is reissued from the
    same CA when it lacks one of `hostnames` or expires within a day."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    ca_crt, ca_key = cert_dir / "ca.crt", cert_dir / "ca.key"
    node_crt, node_key = cert_dir / "node.crt", cert_dir / "node.key"
    if ca_crt.exists() and ca_key.exists():
        ca = CertificateAuthority(ca_crt.read_bytes(), ca_key.read_bytes())
    else:
        ca = generate_ca()
        _write(ca_key, ca.key_pem, private=True)
        _write(ca_crt, ca.cert_pem)
    if node_crt.exists() and node_key.exists() and _usable(node_crt.read_bytes(), ca, hostnames):
        return Certificate(node_crt.read_bytes(), node_key.read_bytes(), ca.cert_pem)
    node = issue_node_certificate(ca, hostnames)
    _write(node_key, node.key_pem, private=True)
    _write(node_crt, node.cert_pem)
    return node


def _usable(cert_pem: bytes, ca: CertificateAuthority, hostnames: tuple[str, ...]) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem)
    issuer = x509.load_pem_x509_certificate(ca.cert_pem)
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    return (
        cert.issuer == issuer.subject
        and cert.not_valid_after_utc > soon
        and set(hostnames) <= certificate_names(cert_pem)
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


class Authenticator:
    def __init__(self, users: dict[str, str] | None) -> None:
        self._users = dict(users) if users else None

    @property
    def enabled(self) -> bool:
        return self._users is not None

    def is_anonymous(self, context: grpc.ServicerContext) -> bool:
        """True when auth is on and the call carries no credentials at all."""
        return (
            self._users is not None
            and dict(context.invocation_metadata()).get("authorization") is None
        )

    def check(self, context: grpc.ServicerContext, *, allow_anonymous: bool = False) -> None:
        """Abort on bad credentials; on none, abort unless the handler authorizes itself."""
        if self._users is None:
            return
        header = dict(context.invocation_metadata()).get("authorization")
        if header is None:
            if allow_anonymous:
                return
            context.set_trailing_metadata((("exception", "access-denied"),))
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "Access Denied")
        if isinstance(header, bytes):
            header = header.decode("latin-1")
        if not self._valid(header):
            # AuthenticationMiddleware.HandleAsGrpcAsync: a gRPC call whose credentials do not
            # authenticate ends with Status(StatusCode.Unauthenticated, "Unauthenticated").
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "Unauthenticated")

    def _valid(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            username, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = self._users.get(username) if self._users else None
        return expected is not None and hmac.compare_digest(expected, password)

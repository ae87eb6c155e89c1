"""TLS certificates and basic authentication for the emulator.

Like EventStoreDB: a secure node requires TLS and credentials; `--insecure` turns off both.
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
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DEFAULT_USERS = {"admin": "changeit"}


@dataclass(frozen=True)
class Certificate:
    cert_pem: bytes
    key_pem: bytes


def generate_self_signed(hostnames: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Certificate:
    """A self-signed server certificate valid for the given names and IP addresses."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "esdb-emulator")])
    alt_names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Certificate(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


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

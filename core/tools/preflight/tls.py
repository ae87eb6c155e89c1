"""preflight's TLS checks: the certificate a node presents, its trust, names and expiry."""

from __future__ import annotations

import socket
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from core.eventstore.connection import Endpoint
from core.tools.preflight.report import (
    CERT_WARN_DAYS,
    Check,
    CheckStatus,
    hostport,
)


class TlsChecks:
    """Mixed into EndpointProbe (probe.py)."""

    if TYPE_CHECKING:  # EndpointProbe's

        def add(self, name: str, status: CheckStatus, detail: str, fix: str = "") -> Check: ...

        side: str
        timeout: float

    def tls(self, endpoint: Endpoint, targets: list[tuple[str, int]]) -> bool:
        host, port = targets[0]
        speaks_tls, presented = self.peek_certificate(host, port)
        if speaks_tls is None:
            self.add(
                "TLS", "fail", f"{hostport(host, port)}: {presented}",
                "check the server is an EventStoreDB node and reachable; retry with a longer "
                "--timeout if the network is slow",
            )  # fmt: skip
            return False
        if not endpoint.tls:
            if speaks_tls:
                self.add(
                    "TLS",
                    "fail",
                    f"{hostport(host, port)} speaks TLS but the connection string says "
                    f"Tls=false (server certificate: {presented.subject.rfc4514_string()})",
                    f"remove Tls=false from the {self.side} connection string, add "
                    "user:password@ and tlsCaFile=/path/to/ca.crt if the CA is not a public one",
                )
                return False
            self.add(
                "TLS",
                "warn",
                f"{hostport(host, port)} speaks plaintext, as the connection string says "
                "(Tls=false): events travel unencrypted, and esdbclient sends no credentials "
                "without TLS",
                "enable TLS on the server and remove Tls=false from the connection string",
            )
            return True
        if not speaks_tls:
            self.add(
                "TLS",
                "fail",
                f"{hostport(host, port)} does not speak TLS ({presented}): the server runs "
                "insecure (plaintext) while the connection string asks for TLS",
                f"add Tls=false to the {self.side} connection string to match the server, or "
                "enable TLS on the server (Event Store Cloud always uses TLS: then this is not "
                "the cloud cluster's address)",
            )
            return False
        return self.verify_certificate(endpoint, host, port, presented)

    def peek_certificate(self, host: str, port: int) -> tuple[bool | None, Any]:
        """(True, certificate) if the server completes a TLS handshake (nothing verified),
        (False, why) if it does not speak TLS, (None, why) if the attempt failed otherwise."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        try:
            with (
                socket.create_connection((host, port), timeout=self.timeout) as raw,
                context.wrap_socket(raw, server_hostname=host) as sock,
            ):
                der = sock.getpeercert(binary_form=True)
        except TimeoutError:
            return None, f"no TLS or plaintext answer within {self.timeout:g}s"
        except ssl.SSLError as e:
            return False, e.reason or str(e)
        except (ConnectionResetError, BrokenPipeError) as e:
            return False, type(e).__name__
        except OSError as e:
            return None, f"cannot connect: {e.strerror or e}"
        if der is None:
            return None, "the server presented no certificate"
        return True, x509.load_der_x509_certificate(der)

    def verify_certificate(
        self, endpoint: Endpoint, host: str, port: int, cert: x509.Certificate
    ) -> bool:
        names = _certificate_names(cert)
        expires = cert.not_valid_after_utc
        days_left = (expires - datetime.now(UTC)).total_seconds() / 86400
        described = (
            f"subject {cert.subject.rfc4514_string()}, issuer {cert.issuer.rfc4514_string()}, "
            f"names {', '.join(names) or '(none)'}, expires {expires:%Y-%m-%d} "
            f"({days_left:.0f} days)"
        )
        figures = {"certificate_days_left": round(days_left, 1)}
        try:
            context = ssl.create_default_context(cafile=endpoint.ca_file)
        except (OSError, ssl.SSLError) as e:  # the CA file was readable a moment ago
            self.add("TLS", "fail", f"cannot load tlsCaFile: {e}", "fix tlsCaFile", **figures)
            return False
        context.set_alpn_protocols(["h2"])
        try:
            with (
                socket.create_connection((host, port), timeout=self.timeout) as raw,
                context.wrap_socket(raw, server_hostname=host) as sock,
            ):
                version = sock.version() or "TLS"
        except ssl.SSLCertVerificationError as e:
            code, message = e.verify_code, e.verify_message or str(e)
            if code == 62 or "mismatch" in message.lower():  # X509_V_ERR_HOSTNAME_MISMATCH
                fix = (
                    f"connect by a name the certificate holds ({', '.join(names) or 'none'}), "
                    f"or reissue the certificate with {host} in its subject alternative names"
                )
            elif code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
                fix = "renew the server certificate"
            elif endpoint.ca_file:
                fix = (
                    f"tlsCaFile ({endpoint.ca_file}) is not the CA that signed this certificate "
                    f"(issuer {cert.issuer.rfc4514_string()}): point tlsCaFile in the "
                    f"{self.side} connection string at that CA's certificate"
                )
            else:
                fix = (
                    f"the certificate is signed by {cert.issuer.rfc4514_string()}, which this "
                    "system does not trust: add tlsCaFile=/path/to/ca.crt to the "
                    f"{self.side} connection string"
                )
            self.add(
                "TLS", "fail", f"certificate not accepted: {message}; {described}", fix, **figures
            )
            return False
        except (TimeoutError, OSError) as e:
            self.add(
                "TLS", "fail", f"handshake failed: {e}; {described}",
                "retry; if it persists, check the server's TLS settings", **figures,
            )  # fmt: skip
            return False
        if days_left < CERT_WARN_DAYS:
            self.add(
                "TLS",
                "warn",
                f"{version}, certificate verified; {described}",
                f"renew the server certificate within {max(0, int(days_left))} days",
                **figures,
            )
        else:
            self.add("TLS", "ok", f"{version}, certificate verified; {described}", **figures)
        return True

    # -- gossip


def ca_file_problem(path: str) -> str | None:
    file = Path(path)
    if not file.is_file():
        return f"{path} does not exist"
    try:
        ssl.create_default_context(cafile=path)
    except PermissionError:
        return f"{path} cannot be read"
    except (ssl.SSLError, OSError, ValueError):
        return f"{path} holds no PEM certificate"
    return None


def _certificate_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return [str(a.value) for a in common]
    names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    return names + [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]

"""Connection strings as the database client reads them: what it accepts, never the password."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from esdbclient.connection_spec import ConnectionOptions, ConnectionSpec

from core.errors import PermanentError


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What a connection string says, as esdbclient reads it; never the password."""

    scheme: str  # esdb or esdb+discover
    targets: tuple[tuple[str, int], ...]  # (host, port); the port defaults to 2113
    tls: bool
    tls_verify_cert: bool
    ca_file: str | None
    username: str | None
    has_password: bool
    node_preference: str

    @property
    def discover(self) -> bool:
        return self.scheme.endswith("+discover")


_KURRENTDB_SCHEMES = {"kurrentdb": "esdb", "kurrentdb+discover": "esdb+discover"}


def esdbclient_uri(connection_string: str) -> str:
    """kurrentdb:// names the same protocol as esdb://; esdbclient 1.1.7 knows only esdb."""
    scheme, sep, rest = connection_string.partition("://")
    mapped = _KURRENTDB_SCHEMES.get(scheme.lower())
    return f"{mapped}://{rest}" if sep and mapped else connection_string


def parse_connection_string(connection_string: str, *, side: str) -> Endpoint:
    """The parts of a connection string esdbclient uses; PermanentError (without the string)
    if esdbclient would refuse it."""
    try:
        spec = ConnectionSpec(esdbclient_uri(connection_string))
    except ValueError as e:
        raise PermanentError(
            f"{side}: invalid connection string: {first_line(e)}",
            hint="use esdb://user:password@host:2113 or esdb+discover://... (see the docs)",
        ) from None
    targets = []
    for target in spec.targets:
        host, _, port = target.rpartition(":")
        targets.append((host.strip("[]"), int(port)))
    options = spec.options
    return Endpoint(
        scheme=spec.scheme,
        targets=tuple(targets),
        tls=options.Tls,
        tls_verify_cert=options.TlsVerifyCert,
        ca_file=options.TlsCaFile,
        username=spec.username,
        has_password=bool(spec.password),
        node_preference=options.NodePreference,
    )


def first_line(error: Exception) -> str:
    """esdbclient's message without the connection string it appends (it holds the password)."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if "://" in text:
        text = text[: text.rfind(": ")] if ": " in text else "malformed connection string"
    return text


def option_problem(name: str, value: str) -> str | None:
    """Why esdbclient would refuse this connection-string option, or None."""
    try:
        ConnectionOptions(urlencode({name: value}))
    except ValueError as exc:  # its message quotes the option, never the userinfo
        return str(exc).splitlines()[0]
    return None

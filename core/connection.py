"""Connection strings: what is wrong with one, the password redacted, what it gives up in
security. Never quotes a password; the database client's own rules for options are asked in
core/eventstore/connection.py."""

from __future__ import annotations

from urllib.parse import parse_qs

from core.eventstore.connection import option_problem

CONNECTION_SCHEMES = ("esdb", "esdb+discover", "kurrentdb", "kurrentdb+discover")


CONNECTION_FIX = (
    "use e.g. esdb://admin:PASSWORD@host:2113?tls=true (schemes: "
    + ", ".join(f"{s}://" for s in CONNECTION_SCHEMES)
    + ")"
)


def _split_connection_string(value: str) -> tuple[str, str | None, str] | None:
    """(scheme, userinfo, hosts) of ``scheme://[userinfo@]hosts[/...][?...]``, or None."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        return None
    head = rest.split("?", 1)[0]
    at = head.rfind("@")
    if at < 0 and "@" in rest:  # a password holding '?' unencoded: still find the userinfo
        at = rest.rfind("@")
        head = rest
    userinfo = head[:at] if at >= 0 else None
    hosts = head[at + 1 :].split("/", 1)[0].split("?", 1)[0]
    return scheme, userinfo, hosts


def connection_string_problem(value: str) -> str | None:
    """What is wrong with an EventStoreDB connection string, without quoting any of it."""
    if not value.strip():
        return "is empty"
    if value.strip().startswith(("@Microsoft.KeyVault(", "projects/")):
        # The platform passes the reference through when it cannot resolve it.
        return (
            "is an unresolved secret reference (Key Vault or Secret Manager): give the "
            "function's identity read access to the secret and check its name"
        )
    parts = _split_connection_string(value.strip())
    if parts is None:
        return "is not an EventStoreDB connection string (no scheme://)"
    scheme, _userinfo, hosts = parts
    if scheme.lower() not in CONNECTION_SCHEMES:
        return "has an unsupported scheme"
    for host in hosts.split(","):
        name, port = host, ""
        if host.startswith("["):  # [IPv6]:port
            name, _, port = host[1:].partition("]")
            port = port.removeprefix(":")
        elif ":" in host:
            name, _, port = host.rpartition(":")
        if not name.strip():
            return "names no host"
        if any(c.isspace() for c in name):
            return "has a host name with a space in it"
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            return "has an invalid port"
    return None


def redact_connection_string(value: str) -> str:
    """The connection string with the password of ``user:password@`` replaced by ``***``."""
    parts = _split_connection_string(value)
    if parts is None or parts[1] is None or ":" not in parts[1]:
        return value
    scheme, userinfo, _ = parts
    user = userinfo.split(":", 1)[0]
    rest = value.partition("://")[2]
    return f"{scheme}://{user}:***@{rest[len(userinfo) + 1 :]}"


def _query(value: str) -> str:
    """The ``?...`` options, taken after the userinfo (a password may hold an unencoded '?')."""
    rest = value.partition("://")[2]
    return rest[rest.rfind("@") + 1 :].partition("?")[2]


def _option(value: str, name: str) -> str | None:
    for key, values in parse_qs(_query(value)).items():
        if key.lower() == name.lower():
            return values[0].strip().lower()
    return None


def connection_warnings(value: str, side: str) -> list[str]:
    """What a valid connection string gives up in security, one warning each (no secrets)."""
    warnings = []
    if _option(value, "tls") == "false":
        warnings.append(
            f"{side}: TLS is off (tls=false in the connection string): events and the password "
            "cross the network unencrypted — remove tls=false unless the server is insecure and "
            "the network path is private"
        )
    if _option(value, "tlsVerifyCert") == "false":
        warnings.append(
            f"{side}: tlsVerifyCert=false is ignored: the server certificate is always verified "
            "— remove it and give the CA that signed the server certificate with tlsCaFile=..."
        )
    return warnings


def options_problem(value: str) -> str | None:
    """What the database client would refuse in the options (unknown name, bad value)."""
    for name, values in parse_qs(_query(value)).items():
        problem = option_problem(name, values[0])
        if problem:
            return f"has an invalid option {name}: {problem}"
    return None

"""Whether the source and the target are the same database: a migration into itself copies
nothing and, with a chained or partitioned job, appends every event again."""

from __future__ import annotations

import ipaddress

from core.errors import RelayError
from core.eventstore.connection import parse_connection_string
from core.tools.preflight.report import Check, hostport

LOOPBACK = "loopback"  # localhost, 127.0.0.0/8, ::1: one machine, whichever name is used


def _host(name: str) -> str:
    name = name.strip().strip("[]").rstrip(".").lower()
    if name in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return LOOPBACK
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return name
    if address.is_loopback or address.is_unspecified:
        return LOOPBACK
    return str(address)


def endpoints(connection_string: str, side: str) -> set[tuple[str, int]]:
    """The (host, port) pairs a connection string names (its host, or its gossip seeds),
    host names normalised; empty when it cannot be parsed (its own check says why)."""
    try:
        endpoint = parse_connection_string(connection_string, side=side)
    except RelayError:
        return set()
    return {(_host(host), port) for host, port in endpoint.targets}


def same_database_check(
    source: str,
    target: str,
    source_addresses: list[str] | None = None,
    target_addresses: list[str] | None = None,
) -> Check:
    """Fail when the target names the source: a host:port (or gossip seed) they share, or,
    once DNS has answered, host names that resolve to the same addresses on the same ports."""
    name = "source ≠ target"
    ours, theirs = endpoints(source, "source"), endpoints(target, "target")
    if not ours or not theirs:
        return Check(
            name=name, status="skip", detail="a connection string is not usable (see its check)"
        )
    shared = ours & theirs
    if not shared and source_addresses and target_addresses:
        same_ports = {p for _, p in ours} == {p for _, p in theirs}
        resolved = {_host(a) for a in source_addresses}
        if same_ports and resolved == {_host(a) for a in target_addresses}:
            shared = {(a, p) for a in resolved for _, p in ours}
    if shared:
        where = ", ".join(sorted(hostport(h, p) for h, p in shared))
        return Check(
            name=name,
            status="fail",
            detail=f"the source and the target are the same database ({where}): a migration "
            "into itself copies nothing, or copies every event again",
            fix="set target to the new cluster's connection string (for Event Store Cloud, "
            "the address on the console's Addresses tab)",
        )
    return Check(name=name, status="ok", detail="the source and the target are different hosts")

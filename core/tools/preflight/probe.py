"""preflight's checks of one endpoint: its connection string, DNS, TCP, TLS (tls.py), the
cluster its gossip reports, credentials, and the round trip of a call."""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from core.errors import AccessDenied, RelayError
from core.eventstore import EventStore
from core.eventstore.connection import Endpoint, parse_connection_string
from core.model import Member
from core.tools.preflight.report import (
    GRPC_CALLS,
    PROBE_STREAM,
    SLOW_ROUND_TRIP_MS,
    TCP_CONNECTS,
    Check,
    CheckStatus,
    hostport,
)
from core.tools.preflight.tls import TlsChecks, ca_file_problem


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _single_target(connection_string: str, host: str, port: int) -> str:
    """The connection string pointed at one node with esdb:// (no discovery in the client's
    constructor, so every call is bounded by our timeout); user, password and options kept."""
    _, _, rest = connection_string.partition("://")
    head, q, query = rest.partition("?")
    userinfo, at, _ = head.rpartition("@")
    return f"esdb://{userinfo}{at}{hostport(host, port)}{'?' + query if q else ''}"


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


@dataclass
class EndpointProbe(TlsChecks):
    side: str
    connection_string: str
    timeout: float
    public: bool = False  # a public cluster behind an IP allowlist, reached through a NAT
    egress_ips: list[str] = field(default_factory=list)  # the NAT's static addresses, if known
    checks: list[Check] = field(default_factory=list)
    local_addresses: set[str] = field(default_factory=set)  # where our connections left from
    resolved: list[str] = field(default_factory=list)  # the hosts' addresses, as DNS gave them
    reachable: list[tuple[str, int]] = field(default_factory=list)  # hosts that accepted TCP

    def add(
        self, what: str, status: CheckStatus, detail: str, fix: str | None = None, **figures: float
    ) -> Check:
        check = Check(
            name=f"{self.side}: {what}", status=status, detail=detail, fix=fix, figures=figures
        )
        self.checks.append(check)
        return check

    def skip(self, *whats: str, because: str) -> list[Check]:
        for what in whats:
            self.add(what, "skip", f"not run: {because}")
        return self.checks

    def run(self) -> list[Check]:
        steps = ("DNS", "TCP", "TLS", "cluster", "credentials", "latency")
        endpoint = self.parse()
        if endpoint is None:
            return self.skip(*steps, because="the connection string is not usable")
        if not self.dns(endpoint.targets):
            return self.skip(*steps[1:], because="no host resolves")
        reachable = self.tcp(endpoint.targets)
        if not reachable:
            return self.skip(*steps[2:], because="no host accepts TCP connections")
        if not self.tls(endpoint, reachable):
            return self.skip(*steps[3:], because="the TLS check failed")
        node = self.cluster(endpoint, reachable)
        if node is None:
            return self.skip(*steps[4:], because="no cluster node to talk to")
        try:
            store = EventStore(
                _single_target(self.connection_string, *node),
                side=self.side,
                timeout=self.timeout,
                retry_deadline=0.0,  # one attempt: preflight reports, it does not retry
            )
        except RelayError as e:
            self.add("credentials", "fail", f"cannot open a client: {e.message}", e.hint)
            return self.skip(*steps[5:], because="no client")
        with store:
            if not self.credentials(endpoint, store):
                return self.skip(*steps[5:], because="the credentials check failed")
            self.latency(store)
        return self.checks

    # -- connection string
    def parse(self) -> Endpoint | None:
        try:
            endpoint = parse_connection_string(self.connection_string, side=self.side)
        except RelayError as e:
            self.add(
                "connection string",
                "fail",
                e.message,
                f"fix the {self.side} connection string: {e.hint}",
            )
            return None
        hosts = ", ".join(hostport(h, p) for h, p in endpoint.targets)
        parts = [f"{endpoint.scheme}:// {hosts}"]
        if endpoint.tls:
            parts.append(f"TLS on (CA: {endpoint.ca_file or 'the system trust store'})")
        else:
            parts.append("TLS off (Tls=false)")
        parts.append(f"user {endpoint.username}" if endpoint.username else "no credentials")
        detail = "; ".join(parts)
        if endpoint.tls and endpoint.ca_file:
            problem = ca_file_problem(endpoint.ca_file)
            if problem:
                self.add(
                    "connection string",
                    "fail",
                    f"{detail}; tlsCaFile {problem}",
                    f"set tlsCaFile in the {self.side} connection string to the PEM file of "
                    "the CA that signed the server certificate (a path this function can read)",
                )
                return None
        if not endpoint.tls:
            self.add("connection string", "ok", detail)  # the TLS check warns about it
        elif not endpoint.tls_verify_cert:
            self.add(
                "connection string",
                "warn",
                detail + "; TlsVerifyCert=false is ignored by esdbclient: the certificate is "
                "always verified",
                "remove TlsVerifyCert=false and give the CA with tlsCaFile=... instead",
            )
        else:
            self.add("connection string", "ok", detail)
        return endpoint

    # -- DNS
    def dns(self, targets: Iterable[tuple[str, int]]) -> bool:
        found, failed, public = [], [], []
        start = time.monotonic()
        for host, port in targets:
            addresses = self.resolve(host, port)
            if isinstance(addresses, str):
                failed.append(f"{host} ({addresses})")
                continue
            found.append(f"{host} → {', '.join(addresses)}")
            self.resolved += addresses
            public += [a for a in addresses if not ipaddress.ip_address(a).is_private]
        figures = {"seconds": round(time.monotonic() - start, 3)}
        if failed:
            self.add(
                "DNS",
                "fail" if not found else "warn",
                "cannot resolve "
                + "; ".join(failed)
                + (f"; resolved {'; '.join(found)}" if found else ""),
                f"check the host name in the {self.side} connection string; for Event Store "
                "Cloud use the cluster address from the console's Addresses tab, and let the "
                "function use its VPC/VNet DNS resolver (private DNS names resolve only inside "
                "the network)",
                **figures,
            )
            return bool(found)
        if public and not self.public:
            self.add(
                "DNS",
                "warn",
                "; ".join(found) + f"; public address(es) {', '.join(public)}",
                "Event Store Cloud clusters are reached over the peering at private addresses: "
                "check that this is the cluster's address and that traffic to it goes through "
                "the peering",
                **figures,
            )
        else:
            self.add("DNS", "ok", "; ".join(found), **figures)
        return True

    def resolve(self, host: str, port: int) -> list[str] | str:
        """Addresses of host, or why there are none."""
        if _is_ip(host):
            return [host]
        try:
            infos = bounded(
                lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), self.timeout
            )
        except TimeoutError as e:
            return str(e)
        except socket.gaierror as e:
            return e.strerror or str(e)
        except OSError as e:
            return str(e)
        return sorted({str(info[4][0]) for info in infos})

    # -- TCP
    def tcp(self, targets: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
        reachable, lines, problems = [], [], []
        fixes: set[str] = set()
        figures: dict[str, float] = {}
        for host, port in targets:
            result = self.connect(host, port)
            if isinstance(result, float):
                reachable.append((host, port))
                lines.append(f"{hostport(host, port)} in {result:.2f} ms")
                figures[f"connect_ms {hostport(host, port)}"] = result
                continue
            problem, fix = result
            problems.append(f"{hostport(host, port)}: {problem}")
            fixes.add(fix)
        self.reachable = list(reachable)
        if self.local_addresses:
            lines.append("from " + ", ".join(sorted(self.local_addresses)))
        if problems:
            self.add(
                "TCP",
                "fail" if not reachable else "warn",
                "; ".join(problems + lines),
                "; ".join(sorted(fixes)),
                **figures,
            )
        else:
            self.add("TCP", "ok", "connected to " + "; ".join(lines), **figures)
        return reachable

    def connect(self, host: str, port: int) -> float | tuple[str, str]:
        """Median connect time in ms, or (problem, fix)."""
        times = []
        for _ in range(TCP_CONNECTS):
            start = time.monotonic()
            try:
                with socket.create_connection((host, port), timeout=self.timeout) as sock:
                    times.append(time.monotonic() - start)
                    self.local_addresses.add(str(sock.getsockname()[0]))
            except ConnectionRefusedError:
                return (
                    "connection refused: nothing listens there",
                    f"check the port in the {self.side} connection string (EventStoreDB "
                    "listens on 2113 by default) and that the server is running",
                )
            except TimeoutError:
                if self.public:
                    return (
                        f"no answer within {self.timeout:g}s",
                        "a public cluster drops connections from addresses its IP allowlist "
                        "does not name: add the function's egress address "
                        f"({', '.join(self.egress_ips) or 'the NAT output of the template'}) "
                        "to the cluster's allowlist, and check that the function's subnet "
                        "routes 0.0.0.0/0 through the NAT and its security group or NSG lets "
                        "the port out",
                    )
                return (
                    f"no answer within {self.timeout:g}s",
                    "packets are dropped on the way: allow inbound TCP on the port from the "
                    "function's subnet (security group, firewall, NSG), and check that the "
                    "subnet's route table sends the cluster's range through the peering",
                )
            except OSError as e:
                return (
                    f"cannot connect: {e.strerror or e}",
                    "there is no route to the host from here: check the peering is active and "
                    "its routes are in the function subnet's route table",
                )
        return _ms(statistics.median(times))

    # -- TLS
    def cluster(
        self, endpoint: Endpoint, reachable: list[tuple[str, int]]
    ) -> tuple[str, int] | None:
        """Read gossip from the first reachable node; the node the relay would use (by the
        node preference) or None if there is none."""
        seed = reachable[0]
        found = server_version(*seed, endpoint.tls, endpoint.ca_file, self.timeout)
        version = (
            f"server version: {found} (HTTP /info)"
            if found
            else "server version: not reported (no answer on HTTP /info, and esdbclient has no "
            "server-features call)"
        )
        try:
            with EventStore(
                _single_target(self.connection_string, *seed),
                side=self.side,
                timeout=self.timeout,
                retry_deadline=0.0,
            ) as store:
                members = store.read_gossip()
        except AccessDenied as e:
            self.add(
                "cluster", "skip",
                f"gossip refused the credentials ({e.code}); see the credentials check",
            )  # fmt: skip
            return seed
        except RelayError as e:
            discover = endpoint.discover or len(endpoint.targets) > 1
            self.add(
                "cluster",
                "fail" if discover else "warn",
                f"cannot read gossip from {hostport(*seed)}: {e.message}; {version}",
                "the client discovers the cluster through gossip: check the address is a "
                "node's HTTP/gRPC port (2113)"
                if discover
                else "not needed with esdb:// and one host, but a cluster should answer it",
            )
            return None if discover else seed
        listed = ", ".join(f"{m.state} {hostport(m.host, m.port)}" for m in members)
        detail = f"{len(members)} member(s): {listed or 'none'}; {version}"
        discover = endpoint.discover or len(endpoint.targets) > 1
        if not discover:
            self.add("cluster", "ok", detail)
            return seed
        chosen = _preferred(members, endpoint.node_preference)
        if chosen is None:
            self.add(
                "cluster",
                "fail",
                detail + f"; no member in state {endpoint.node_preference}",
                "wait for the cluster to elect a leader, or change NodePreference in the "
                "connection string",
            )
            return None
        unreachable = []
        for member in members:
            result = self.resolve(member.host, member.port)
            problem = result if isinstance(result, str) else None
            if problem is None:
                connected = self.connect(member.host, member.port)
                problem = None if isinstance(connected, float) else connected[0]
            if problem:
                unreachable.append(f"{hostport(member.host, member.port)} ({problem})")
        if unreachable:
            self.add(
                "cluster",
                "fail",
                detail + "; not reachable from here: " + "; ".join(unreachable),
                "the client connects to the addresses gossip advertises: they must resolve and "
                "accept TCP from the function's subnet (peering routes, security groups, and "
                "the nodes' advertised host names)",
            )
            return None
        self.add("cluster", "ok", detail + f"; the relay uses {hostport(chosen.host, chosen.port)}")
        return chosen.host, chosen.port

    # -- credentials
    def credentials(self, endpoint: Endpoint, store: EventStore) -> bool:
        user = endpoint.username or "(none)"
        try:
            store.head_position()
            if self.side == "target":
                store.current_revision(PROBE_STREAM)  # an empty append that cannot succeed
        except AccessDenied as e:
            self.add("credentials", "fail", *self._denied(endpoint, e, user))
            return False
        except RelayError as e:
            self.add(
                "credentials",
                "fail",
                f"the test read failed: {e.message}",
                e.hint or "check the server's health and retry",
            )
            return False
        rights = "reads $all and may append" if self.side == "target" else "reads $all"
        if not endpoint.tls:
            self.add("credentials", "ok", f"anonymous access (no TLS) {rights}")
        else:
            self.add("credentials", "ok", f"user {user} {rights}")
        return True

    def _denied(self, endpoint: Endpoint, error: AccessDenied, user: str) -> tuple[str, str]:
        if error.code == "UNAUTHENTICATED":
            return (
                f"the server does not accept user {user} with the password given "
                "(UNAUTHENTICATED): wrong password or unknown user",
                f"correct the user name or password in the {self.side} connection string (or "
                "the secret the deployment reads it from)",
            )
        if not endpoint.tls and endpoint.username:
            return (
                "access denied (PERMISSION_DENIED): esdbclient sends no credentials without "
                "TLS, so the call ran as anonymous",
                "enable TLS on the server and remove Tls=false, or allow anonymous access",
            )
        if not endpoint.username:
            return (
                "access denied (PERMISSION_DENIED): the connection string has no credentials",
                f"add user:password@ to the {self.side} connection string",
            )
        need = "read $all and write streams" if self.side == "target" else "read $all"
        return (
            f"user {user} is authenticated but may not {need} (PERMISSION_DENIED: missing ACL)",
            f"grant {user} the rights to {need} (e.g. make it a member of $admins, or add it "
            "to the default ACLs' $r/$w), or use a user that has them",
        )

    # -- latency
    def latency(self, store: EventStore) -> None:
        times = []
        try:
            for _ in range(GRPC_CALLS):
                start = time.monotonic()
                store.head_position()
                times.append(time.monotonic() - start)
        except RelayError as e:
            self.add("latency", "fail", f"a timed call failed: {e.message}", e.hint)
            return
        median, worst = _ms(statistics.median(times)), _ms(max(times))
        detail = f"gRPC round trip (read the head of $all): median {median} ms, max {worst} ms"
        if median > SLOW_ROUND_TRIP_MS:
            self.add(
                "latency",
                "warn",
                detail,
                "every batch waits for several round trips: run the function in the same "
                "region (and zone) as the cluster",
                round_trip_ms=median,
                max_ms=worst,
            )
        else:
            self.add("latency", "ok", detail, round_trip_ms=median, max_ms=worst)


def server_version(
    host: str, port: int, tls: bool, ca_file: str | None, timeout: float
) -> str | None:
    """The version an EventStoreDB/KurrentDB node reports on its HTTP `/info` endpoint (same
    port as gRPC, readable without credentials), or None when nothing sensible answers."""
    scheme = "https" if tls else "http"
    context = ssl.create_default_context(cafile=ca_file) if tls else None
    request = urllib.request.Request(
        f"{scheme}://{hostport(host, port)}/info", headers={"Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            info = json.loads(response.read(65536))
    except (OSError, ValueError, http.client.HTTPException):
        return None
    if not isinstance(info, dict):
        return None
    version = info.get("dbVersion") or info.get("esVersion")
    return str(version) if version else None


def _preferred(members: list[Member], preference: str) -> Member | None:
    if preference == "random":
        return members[0] if members else None
    for member in members:
        if member.state == preference:
            return member
    return None


def bounded(fn: Callable[[], Any], timeout: float) -> Any:
    """Run fn in a daemon thread; TimeoutError if it has not returned within `timeout`
    (for calls without a timeout of their own, such as getaddrinfo)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:
            box["error"] = e

    thread = threading.Thread(target=run, daemon=True, name="preflight")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout:g}s")
    if "error" in box:
        raise box["error"]
    return box["value"]

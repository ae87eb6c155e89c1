"""`preflight`: from where the relay runs, can it reach, trust and use both databases?

For the source and the target: the connection string, DNS, TCP (with connect latency), TLS
(certificate, trust, host name, expiry), gossip (cluster members and whether they are reachable
from here), credentials (a read of `$all`; on the target also a write probe that writes
nothing) and the round trip of a gRPC call. Then the network, in one of two topologies:

- peered (the default): the rules of Event Store Cloud peering. A peering link carries a single
  IP range, so every subnet and pod range the function uses must lie inside it; on Azure the
  link has no gateway transit, so the function must sit in the directly peered VNet.
- public: a public cluster with an IP allowlist, reached through a NAT with a static egress
  address. Preflight checks the egress addresses given are public ones, that the target
  resolves to public addresses, and whether the cluster accepted the connection (a public
  cluster drops what its allowlist does not name). It cannot see the NAT's public address from
  inside the function without asking an outside service, and says so ("unknown") instead of
  guessing.

Every check says ok, warn, fail, skip (not run because an earlier one failed) or unknown (cannot
be told from where preflight runs), what it found, and for warn and fail, the exact fix. Each
network step has its own timeout. The report never holds a password: connection strings appear
redacted.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import os
import socket
import ssl
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID
from pydantic import BaseModel, Field, computed_field

from core.checkpoint import open_store
from core.config import ENV_PREFIX, JobConfig
from core.connection import redact_connection_string
from core.errors import AccessDenied, ConfigError, RelayError
from core.eventstore import EventStore
from core.eventstore.connection import Endpoint, parse_connection_string
from core.model import Member

CheckStatus = Literal["ok", "warn", "fail", "skip", "unknown"]
Cloud = Literal["aws", "gcp", "azure"]
CLOUDS: tuple[str, ...] = ("aws", "gcp", "azure")
NetworkMode = Literal["peered", "public"]
NETWORK_MODES: tuple[str, ...] = ("peered", "public")

TCP_CONNECTS = 3  # connects timed per host; the median is reported
GRPC_CALLS = 5  # round trips timed per endpoint; the median is reported
SLOW_ROUND_TRIP_MS = 100.0  # above this a slice spends most of its time waiting
CERT_WARN_DAYS = 14
PROBE_STREAM = "esdb-relay-preflight"  # the target write probe names it; nothing is written


class Check(BaseModel):
    name: str
    status: CheckStatus
    detail: str
    fix: str | None = None
    figures: dict[str, float] = Field(default_factory=dict)


class PreflightReport(BaseModel):
    job_id: str
    source: str = Field(description="the source connection string, password redacted")
    target: str = Field(description="the target connection string, password redacted")
    checks: list[Check]
    finished_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failures(self) -> int:
        return sum(1 for c in self.checks if c.status == "fail")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def warnings(self) -> int:
        return sum(1 for c in self.checks if c.status == "warn")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return self.failures == 0

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def summary(self) -> str:
        failed = [c.name for c in self.checks if c.status == "fail"]
        if failed:
            return f"{len(failed)} check(s) failed: " + ", ".join(failed)
        return f"all checks passed ({self.warnings} warning(s))"


def preflight(
    job: JobConfig,
    *,
    subnets: Iterable[str] = (),
    peering_cidr: str | None = None,
    cloud: Cloud | None = None,
    vnet_is_peered_directly: bool | None = None,
    network_mode: NetworkMode | None = None,
    egress_ips: Iterable[str] = (),
    timeout: float = 5.0,
) -> PreflightReport:
    """Check both endpoints and the network layout. ConfigError if a CIDR, an egress address,
    the cloud or the network mode given is not valid (nothing is checked then).

    network_mode None means peered unless egress addresses are given (then public)."""
    subnets = list(subnets)
    plan = network_plan(subnets, peering_cidr, cloud, network_mode, list(egress_ips))
    checks: list[Check] = []
    local: set[str] = set()
    target_probe: _EndpointProbe | None = None
    for side, secret in (("source", job.source), ("target", job.target)):
        probe = _EndpointProbe(
            side,
            secret.get_secret_value(),
            timeout,
            public=plan.mode == "public" and side == "target",
            egress_ips=[str(ip) for ip in plan.egress_ips],
        )
        try:
            probe.run()
        except Exception as e:  # a report with what was found beats a traceback
            probe.add(
                "preflight",
                "fail",
                f"the checks stopped early: {type(e).__name__}",
                "rerun with a longer --timeout; if it persists, report it as an esdb-relay bug",
            )
        checks += probe.checks
        local |= probe.local_addresses
        if side == "target":
            target_probe = probe
    checks.append(checkpoint_store_check(job, timeout))
    checks += network_checks(plan, cloud, vnet_is_peered_directly, local)
    if plan.mode == "public" and target_probe is not None:
        checks += public_checks(
            plan.egress_ips,
            resolved=target_probe.resolved,
            reachable=target_probe.reachable,
            local_addresses=target_probe.local_addresses,
        )
    return PreflightReport(
        job_id=job.job_id,
        source=redact_connection_string(job.source.get_secret_value()),
        target=redact_connection_string(job.target.get_secret_value()),
        checks=checks,
        finished_at=datetime.now(UTC),
    )


def _env_list(name: str) -> list[str]:
    """A JSON list or a comma-separated list from the environment variable `name`."""
    raw = os.environ.get(name, "").strip()
    if raw.startswith("["):
        try:
            return [str(s) for s in json.loads(raw)]
        except ValueError:
            raise ConfigError(
                f"{name} is not a JSON list",
                hint='use e.g. ["10.0.1.0/24","10.4.0.0/14"] or 10.0.1.0/24,10.4.0.0/14',
            ) from None
    return [s.strip() for s in raw.split(",") if s.strip()]


def preflight_from_env(job: JobConfig, *, timeout: float = 5.0) -> PreflightReport:
    """The handler action: the network settings come from the deployment's env vars
    ESDB_RELAY_PREFLIGHT__SUBNETS (JSON list or comma-separated), __PEERING_CIDR, __CLOUD,
    __VNET_PEERED_DIRECTLY (true/false), __NETWORK_MODE (peered/public) and __EGRESS_IPS (the
    NAT's static addresses, JSON list or comma-separated); without them only the endpoints are
    checked."""
    prefix = f"{ENV_PREFIX}PREFLIGHT__"
    subnets = _env_list(f"{prefix}SUBNETS")
    egress_ips = _env_list(f"{prefix}EGRESS_IPS")
    cloud = os.environ.get(f"{prefix}CLOUD", "").strip().lower() or None
    if cloud is not None and cloud not in CLOUDS:
        raise ConfigError(f"{prefix}CLOUD is {cloud!r}", hint="use aws, gcp or azure")
    direct = os.environ.get(f"{prefix}VNET_PEERED_DIRECTLY", "").strip().lower()
    if direct not in ("", "true", "false", "1", "0"):
        raise ConfigError(f"{prefix}VNET_PEERED_DIRECTLY is {direct!r}", hint="use true or false")
    mode = os.environ.get(f"{prefix}NETWORK_MODE", "").strip().lower() or None
    if mode is not None and mode not in NETWORK_MODES:
        raise ConfigError(f"{prefix}NETWORK_MODE is {mode!r}", hint="use peered or public")
    return preflight(
        job,
        subnets=subnets,
        peering_cidr=os.environ.get(f"{prefix}PEERING_CIDR", "").strip() or None,
        cloud=cloud,  # type: ignore[arg-type]
        vnet_is_peered_directly=None if direct == "" else direct in ("true", "1"),
        network_mode=mode,  # type: ignore[arg-type]
        egress_ips=egress_ips,
        timeout=timeout,
    )


# --- endpoints ----------------------------------------------------------------------------


def _bounded(fn: Callable[[], Any], timeout: float) -> Any:
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


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _single_target(connection_string: str, host: str, port: int) -> str:
    """The connection string pointed at one node with esdb:// (no discovery in the client's
    constructor, so every call is bounded by our timeout); user, password and options kept."""
    _, _, rest = connection_string.partition("://")
    head, q, query = rest.partition("?")
    userinfo, at, _ = head.rpartition("@")
    return f"esdb://{userinfo}{at}{_hostport(host, port)}{'?' + query if q else ''}"


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


@dataclass
class _EndpointProbe:
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
        hosts = ", ".join(_hostport(h, p) for h, p in endpoint.targets)
        parts = [f"{endpoint.scheme}:// {hosts}"]
        if endpoint.tls:
            parts.append(f"TLS on (CA: {endpoint.ca_file or 'the system trust store'})")
        else:
            parts.append("TLS off (Tls=false)")
        parts.append(f"user {endpoint.username}" if endpoint.username else "no credentials")
        detail = "; ".join(parts)
        if endpoint.tls and endpoint.ca_file:
            problem = _ca_file_problem(endpoint.ca_file)
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
            infos = _bounded(
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
                lines.append(f"{_hostport(host, port)} in {result:.2f} ms")
                figures[f"connect_ms {_hostport(host, port)}"] = result
                continue
            problem, fix = result
            problems.append(f"{_hostport(host, port)}: {problem}")
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
    def tls(self, endpoint: Endpoint, targets: list[tuple[str, int]]) -> bool:
        host, port = targets[0]
        speaks_tls, presented = self.peek_certificate(host, port)
        if speaks_tls is None:
            self.add(
                "TLS", "fail", f"{_hostport(host, port)}: {presented}",
                "check the server is an EventStoreDB node and reachable; retry with a longer "
                "--timeout if the network is slow",
            )  # fmt: skip
            return False
        if not endpoint.tls:
            if speaks_tls:
                self.add(
                    "TLS",
                    "fail",
                    f"{_hostport(host, port)} speaks TLS but the connection string says "
                    f"Tls=false (server certificate: {presented.subject.rfc4514_string()})",
                    f"remove Tls=false from the {self.side} connection string, add "
                    "user:password@ and tlsCaFile=/path/to/ca.crt if the CA is not a public one",
                )
                return False
            self.add(
                "TLS",
                "warn",
                f"{_hostport(host, port)} speaks plaintext, as the connection string says "
                "(Tls=false): events travel unencrypted, and esdbclient sends no credentials "
                "without TLS",
                "enable TLS on the server and remove Tls=false from the connection string",
            )
            return True
        if not speaks_tls:
            self.add(
                "TLS",
                "fail",
                f"{_hostport(host, port)} does not speak TLS ({presented}): the server runs "
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
                f"cannot read gossip from {_hostport(*seed)}: {e.message}; {version}",
                "the client discovers the cluster through gossip: check the address is a "
                "node's HTTP/gRPC port (2113)"
                if discover
                else "not needed with esdb:// and one host, but a cluster should answer it",
            )
            return None if discover else seed
        listed = ", ".join(f"{m.state} {_hostport(m.host, m.port)}" for m in members)
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
                unreachable.append(f"{_hostport(member.host, member.port)} ({problem})")
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
        self.add(
            "cluster", "ok", detail + f"; the relay uses {_hostport(chosen.host, chosen.port)}"
        )
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
        f"{scheme}://{_hostport(host, port)}/info", headers={"Accept": "application/json"}
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


def _ca_file_problem(path: str) -> str | None:
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


# --- the checkpoint store -----------------------------------------------------------------


def checkpoint_store_check(job: JobConfig, timeout: float) -> Check:
    """Open the job's checkpoint store and read its last slice record (nothing is written).
    The URL is not shown: cloud store URLs may carry keys."""
    name = "checkpoint store"
    scheme = job.checkpoint_store.partition("://")[0]

    def read() -> int:
        store = open_store(job.checkpoint_store)
        try:
            return len(store.history(job.job_id, limit=1))
        finally:
            close = getattr(store, "close", None)
            if close is not None:
                close()

    try:
        slices = _bounded(read, timeout)
    except TimeoutError as e:
        return Check(
            name=name,
            status="fail",
            detail=f"{scheme}:// store: {e}",
            fix="the function must reach the store's endpoint: check its VPC endpoint / "
            "private endpoint / service access and the function's network egress",
        )
    except RelayError as e:
        return Check(
            name=name,
            status="fail",
            detail=f"{scheme}:// store: {e.message}",
            fix=e.hint or "check checkpoint_store and the function's access to it",
        )
    except Exception as e:  # the cloud SDKs' own errors; their text can quote the URL
        return Check(
            name=name,
            status="fail",
            detail=f"{scheme}:// store: cannot read the job's history ({type(e).__name__})",
            fix="check checkpoint_store, that the store exists, and the function's rights on it",
        )
    state = "has slice records" if slices else "has no slice yet (a new job)"
    return Check(name=name, status="ok", detail=f"{scheme}:// store reachable; the job {state}")


# --- the network --------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class NetworkPlan:
    subnets: list[Network]
    peering: Network | None
    mode: NetworkMode = "peered"
    egress_ips: list[Address] = field(default_factory=list)


def _cidr(value: str, what: str) -> Network:
    try:
        return ipaddress.ip_network(value.strip())
    except ValueError as e:
        hint = "use CIDR notation, e.g. 10.0.0.0/16"
        with contextlib.suppress(ValueError):
            hint = f"did you mean {ipaddress.ip_network(value.strip(), strict=False)}?"
        raise ConfigError(f"{what} {value!r} is not a valid CIDR range: {e}", hint=hint) from None


def _address(value: str) -> Address:
    text = value.strip()
    try:
        return ipaddress.ip_address(text.removesuffix("/32"))
    except ValueError:
        raise ConfigError(
            f"egress IP {value!r} is not an IP address",
            hint="give the NAT's static public address, e.g. 34.120.5.6 (the template's egress "
            "IP output)",
        ) from None


def network_plan(
    subnets: list[str],
    peering_cidr: str | None,
    cloud: str | None,
    network_mode: str | None = None,
    egress_ips: list[str] | None = None,
) -> NetworkPlan:
    if cloud is not None and cloud not in CLOUDS:
        raise ConfigError(f"cloud {cloud!r} is not known", hint="use aws, gcp or azure")
    if network_mode is not None and network_mode not in NETWORK_MODES:
        raise ConfigError(
            f"network mode {network_mode!r} is not known",
            hint="use peered (VPC/VNet peering with Event Store Cloud) or public (a public "
            "cluster with an IP allowlist, reached through a NAT)",
        )
    egress = [_address(ip) for ip in egress_ips or []]
    mode: NetworkMode = network_mode or ("public" if egress else "peered")  # type: ignore[assignment]
    if mode == "public" and peering_cidr:
        raise ConfigError(
            "a peering range was given for the public topology",
            hint="a public cluster is reached through a NAT, not a peering: drop the peering "
            "range, or use the peered network mode",
        )
    if mode == "peered" and egress:
        raise ConfigError(
            "egress IPs were given for the peered topology",
            hint="egress IPs are the NAT's addresses a public cluster's allowlist names: use "
            "the public network mode, or drop them",
        )
    return NetworkPlan(
        subnets=[_cidr(s, "subnet") for s in subnets],
        peering=_cidr(peering_cidr, "peering range") if peering_cidr else None,
        mode=mode,
        egress_ips=egress,
    )


def _covering(networks: list[Network]) -> Network | None:
    """The smallest range holding all of `networks` (one IP version), or None."""
    if not networks or len({n.version for n in networks}) > 1:
        return None
    candidate = networks[0]
    while not all(n.subnet_of(candidate) for n in networks):  # type: ignore[arg-type]
        candidate = candidate.supernet()
    return candidate


def network_checks(
    plan: NetworkPlan,
    cloud: str | None,
    vnet_is_peered_directly: bool | None,
    local_addresses: Iterable[str] = (),
) -> list[Check]:
    checks: list[Check] = []
    if plan.mode == "public":  # no peering: its range rules and Azure's transit do not apply
        return checks
    peering = plan.peering
    pods = " (on GKE: the cluster's pod address range too)" if cloud == "gcp" else ""
    if plan.subnets and peering is None:
        checks.append(
            Check(
                name="network: peering range",
                status="warn",
                detail="subnets given but no peering range: cannot check them",
                fix="pass --peering-cidr with the peering's Remote Address from the Event Store "
                "Cloud console",
            )
        )
    if peering is not None and not plan.subnets:
        checks.append(
            Check(
                name="network: peering range",
                status="warn",
                detail=f"peering range {peering}, but no subnet given to check against it",
                fix="pass --subnet for every subnet the function runs in" + pods,
            )
        )
    for subnet in plan.subnets:
        name = f"network: subnet {subnet}"
        if peering is None:
            continue
        if subnet.version == peering.version and subnet.subnet_of(peering):  # type: ignore[arg-type]
            checks.append(
                Check(name=name, status="ok", detail=f"inside the peering range {peering}")
            )
            continue
        cover = _covering([*plan.subnets, peering])
        widen = f" (e.g. {cover}, which holds every range given)" if cover else ""
        checks.append(
            Check(
                name=name,
                status="fail",
                detail=f"outside the peering range {peering}: a peering link carries a single IP "
                "range, so workloads in this range cannot reach the cluster",
                fix=f"move the function into a subnet inside {peering}{pods}, or re-create the "
                f"peering with a range that holds all of them{widen}",
            )
        )
    for i, a in enumerate(plan.subnets):
        for b in plan.subnets[i + 1 :]:
            if a.version != b.version or not a.overlaps(b):  # type: ignore[arg-type]
                continue
            same = a == b
            checks.append(
                Check(
                    name=f"network: overlap {a} / {b}",
                    status="warn",
                    detail=f"{a} is given twice"
                    if same
                    else f"{a} and {b} overlap: subnets (and GKE pod ranges) of one network "
                    "cannot overlap, so one of them is likely mistyped",
                    fix="give each range once" if same else "check both ranges and correct one",
                )
            )
    if peering is not None:
        foreign = sorted(
            a
            for a in set(local_addresses)
            if not ipaddress.ip_address(a).is_loopback
            and not (
                ipaddress.ip_address(a).version == peering.version
                and ipaddress.ip_address(a) in peering
            )
        )
        if foreign:
            checks.append(
                Check(
                    name="network: this function's address",
                    status="warn",
                    detail=f"connections left from {', '.join(foreign)}, outside the peering "
                    f"range {peering}",
                    fix="unless a VPN or NAT in between is intended, run the function in a "
                    f"subnet inside {peering}",
                )
            )
    if cloud == "azure":
        checks.append(_azure_check(vnet_is_peered_directly))
    return checks


ALLOWLIST = "the cluster's IP allowlist (Kurrent Cloud console, the cluster's public access)"


def _listed(addresses: Iterable[Address | str]) -> str:
    return ", ".join(str(a) for a in addresses)


def public_checks(
    egress_ips: list[Address],
    *,
    resolved: Iterable[str],
    reachable: Iterable[tuple[str, int]],
    local_addresses: Iterable[str],
) -> list[Check]:
    """The public topology, from what the target's probe saw: the addresses its host resolved
    to, the hosts that accepted TCP, and the local addresses those connections left from.

    What cannot be told from here: the address the cluster sees. Behind a NAT the function's
    sockets carry a private address; the public one is added on the way out, and only the far
    side (or an outside "what is my IP" service, which preflight does not call) can report it.
    """
    checks: list[Check] = []
    given = _listed(egress_ips)
    # 1. the egress addresses the deployment says it has
    name = "network: egress IPs"
    not_public = [ip for ip in egress_ips if not ip.is_global]
    if not egress_ips:
        checks.append(
            Check(
                name=name,
                status="warn",
                detail="no egress IP given: preflight cannot say which address the cluster's "
                "allowlist must hold",
                fix="pass --egress-ip with the NAT's static address (the template's egress IP "
                f"output; {ENV_PREFIX}PREFLIGHT__EGRESS_IPS in a deployment)",
            )
        )
    elif not_public:
        checks.append(
            Check(
                name=name,
                status="fail",
                detail=f"{_listed(not_public)} is not a public address: the cluster sees the "
                "NAT's public address, never a private or reserved one",
                fix="give the static public address of the NAT (AWS: the stack output "
                "EgressIp; Google Cloud and Azure: terraform output egress_ip)",
            )
        )
    else:
        checks.append(
            Check(
                name=name,
                status="ok",
                detail=f"the function's traffic to the cluster leaves through {given}; "
                f"{ALLOWLIST} must name it",
            )
        )
    # 2. the target resolves to public addresses
    addresses = sorted(set(resolved))
    name = "network: target address"
    private = [a for a in addresses if not ipaddress.ip_address(a).is_global]
    if not addresses:
        checks.append(
            Check(name=name, status="skip", detail="not run: the target's host did not resolve")
        )
    elif private:
        checks.append(
            Check(
                name=name,
                status="fail",
                detail=f"the target resolves to {_listed(private)}, not a public address: a "
                "public cluster has public addresses, and no NAT reaches a private one "
                "(this looks like a peered cluster, or a private DNS answer)",
                fix="use the cluster's public address from the Kurrent Cloud console, or "
                "deploy the peered topology for a private cluster",
            )
        )
    else:
        checks.append(
            Check(
                name=name,
                status="ok",
                detail=f"the target resolves to public address(es) {_listed(addresses)}, "
                "reached through the NAT",
            )
        )
    # 3. the address the cluster sees: only knowable here when a socket carries it itself
    name = "network: outbound address"
    left_from = sorted(set(local_addresses))
    public_here = [a for a in left_from if ipaddress.ip_address(a).is_global]
    if not left_from:
        checks.append(
            Check(
                name=name,
                status="unknown",
                detail="cannot tell from here: no connection to the target was made",
            )
        )
    elif not public_here:
        checks.append(
            Check(
                name=name,
                status="unknown",
                detail=f"cannot tell from here: connections to the target left from "
                f"{_listed(left_from)}, a private address that the NAT replaces with its public "
                "one on the way out; only the cluster (or an outside service, which preflight "
                "does not call) sees that address"
                + (f". The deployment says it is {given}" if egress_ips else ""),
            )
        )
    elif egress_ips and not {ipaddress.ip_address(a) for a in public_here} & set(egress_ips):
        checks.append(
            Check(
                name=name,
                status="fail",
                detail=f"connections to the target left from the public address(es) "
                f"{_listed(public_here)}, not from the egress IP(s) {given}",
                fix="run preflight inside the deployed function (its preflight action), or "
                "give the address this machine really leaves from",
            )
        )
    else:
        checks.append(
            Check(
                name=name,
                status="ok" if egress_ips else "warn",
                detail=f"connections to the target left from the public address(es) "
                f"{_listed(public_here)}",
                fix=None if egress_ips else f"{ALLOWLIST} must name {_listed(public_here)}",
            )
        )
    # 4. the allowlist: a cluster that accepted our connection admits our outbound address
    name = "network: allowlist"
    hosts = list(reachable)
    if not addresses:
        checks.append(
            Check(name=name, status="skip", detail="not run: the target's host did not resolve")
        )
    elif hosts:
        checks.append(
            Check(
                name=name,
                status="ok",
                detail=f"the cluster accepted connections from where preflight runs "
                f"({_listed(_hostport(*h) for h in hosts)}), so its allowlist admits this "
                "outbound address (run in the function, that is the NAT's)",
            )
        )
    else:
        checks.append(
            Check(
                name=name,
                status="fail",
                detail="the cluster accepted no connection: a public cluster drops connections "
                "from addresses its allowlist does not name",
                fix=f"add {given or 'the NAT egress IP'} to {ALLOWLIST}; see the target's TCP "
                "check for what was seen",
            )
        )
    return checks


def _azure_check(direct: bool | None) -> Check:
    rule = (
        "Event Store Cloud creates Azure peering links with 'Allow gateway transit' disabled "
        "and it cannot be changed from your side, so only workloads in the directly peered "
        "VNet reach the cluster (not through a hub, VPN gateway or a second peering)"
    )
    fix = (
        "integrate the function app with a subnet of the VNet peered with Event Store Cloud "
        "(regional VNet integration), or peer Event Store Cloud with the function's own VNet"
    )
    name = "network: Azure gateway transit"
    if direct is True:
        return Check(
            name=name, status="ok", detail="the function's VNet is the peered one; " + rule
        )
    if direct is False:
        return Check(
            name=name,
            status="fail",
            detail="the function's VNet is not the one peered with Event Store Cloud; " + rule,
            fix=fix,
        )
    return Check(
        name=name,
        status="warn",
        detail="not known whether the function's VNet is the peered one; " + rule,
        fix="check it, then pass --vnet-peered-directly (or set "
        f"{ENV_PREFIX}PREFLIGHT__VNET_PEERED_DIRECTLY=true in the deployment); otherwise " + fix,
    )


__all__ = [
    "Check",
    "NetworkPlan",
    "PreflightReport",
    "network_checks",
    "network_plan",
    "preflight",
    "preflight_from_env",
    "public_checks",
]

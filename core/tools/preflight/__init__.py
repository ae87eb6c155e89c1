"""`preflight`: from where the relay runs, can it reach, trust and use both databases?

First, that the target is not the source (same host:port or gossip seed once localhost and
127.0.0.1 are taken as one, or names resolving to the same addresses on the same ports). For
the source and the target: the connection string, DNS, TCP (with connect latency), TLS
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

`diagnose` probes one side the same way for a command that could not reach it (`run`).

Rooms: run.py (the run), diagnose.py (one side, after a failure), same.py (source ≠ target),
probe.py and tls.py (one endpoint), network.py (peered), public.py (a public cluster),
report.py.
"""

from core.tools.preflight.diagnose import connection_failure, diagnose, side_of
from core.tools.preflight.network import network_checks, network_plan
from core.tools.preflight.probe import EndpointProbe, server_version
from core.tools.preflight.public import public_checks
from core.tools.preflight.report import Check, PreflightReport
from core.tools.preflight.run import preflight, preflight_from_env

__all__ = [
    "Check",
    "EndpointProbe",
    "PreflightReport",
    "connection_failure",
    "diagnose",
    "network_checks",
    "network_plan",
    "preflight",
    "preflight_from_env",
    "public_checks",
    "server_version",
    "side_of",
]

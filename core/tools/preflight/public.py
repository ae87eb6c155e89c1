"""preflight's checks for a public cluster reached through a NAT's static address: what can
be told from inside the function, and "unknown" for what cannot."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from core.config import ENV_PREFIX
from core.tools.preflight.report import (
    Address,
    Check,
    hostport,
)

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
                f"({_listed(hostport(*h) for h in hosts)}), so its allowlist admits this "
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

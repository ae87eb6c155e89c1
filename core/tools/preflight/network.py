"""preflight's network checks for the peered topology: the function's subnets inside the one
range a peering carries; on Azure the directly peered VNet."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from core.config import ENV_PREFIX
from core.errors import ConfigError
from core.tools.preflight.report import (
    CLOUDS,
    NETWORK_MODES,
    Address,
    Check,
    Network,
    NetworkMode,
)


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

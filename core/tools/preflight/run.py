"""preflight's run: both endpoints, the checkpoint store, then the network of the topology."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime

from core.checkpoint import open_store
from core.config import ENV_PREFIX, JobConfig
from core.connection import redact_connection_string
from core.errors import ConfigError, RelayError
from core.tools.preflight.network import network_checks, network_plan
from core.tools.preflight.probe import EndpointProbe, bounded
from core.tools.preflight.public import public_checks
from core.tools.preflight.report import (
    CLOUDS,
    NETWORK_MODES,
    Check,
    Cloud,
    NetworkMode,
    PreflightReport,
)
from core.tools.preflight.same import same_database_check


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
    target_probe: EndpointProbe | None = None
    probes: list[EndpointProbe] = []
    for side, secret in (("source", job.source), ("target", job.target)):
        probe = EndpointProbe(
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
        probes.append(probe)
        local |= probe.local_addresses
        if side == "target":
            target_probe = probe
    checks.insert(
        0,
        same_database_check(
            job.source.get_secret_value(),
            job.target.get_secret_value(),
            probes[0].resolved,
            probes[1].resolved,
        ),
    )
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
        slices = bounded(read, timeout)
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

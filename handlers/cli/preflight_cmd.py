"""`esdb-relay preflight`: check, from where the relay runs, that both databases and the
network are ready for a migration.

Exit codes: 0 no check failed (warnings allowed), 1 a check failed, 2 configuration error.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.errors import ConfigError
from core.tools.preflight import PreflightReport
from core.tools.preflight import preflight as run_preflight
from handlers.cli.common import EXIT_ERROR, EXIT_FAILED, EXIT_OK, err, load_job

_MARKS = {
    "ok": "[green]✓[/]",
    "warn": "[yellow]![/]",
    "fail": "[red]✗[/]",
    "skip": "[dim]-[/]",
    "unknown": "[cyan]?[/]",
}


class CloudName(StrEnum):
    aws = "aws"
    gcp = "gcp"
    azure = "azure"


class NetworkModeName(StrEnum):
    peered = "peered"
    public = "public"


def preflight(
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Job file (.toml, .yaml, .json); ESDB_RELAY_* env vars override it.",
    ),
    subnet: list[str] = typer.Option(
        [],
        "--subnet",
        help="A subnet or GKE pod CIDR the function uses (repeat for each); each must lie "
        "inside --peering-cidr.",
    ),
    peering_cidr: str | None = typer.Option(
        None,
        "--peering-cidr",
        help="The peering's single IP range (Remote Address in the Event Store Cloud console).",
    ),
    cloud: CloudName | None = typer.Option(
        None, "--cloud", help="Where the function runs: aws, gcp or azure."
    ),
    vnet_peered_directly: bool | None = typer.Option(
        None,
        "--vnet-peered-directly/--vnet-not-peered-directly",
        help="Azure: whether the function's VNet is the one peered with Event Store Cloud "
        "(peering links have no gateway transit).",
    ),
    network_mode: NetworkModeName | None = typer.Option(
        None,
        "--network-mode",
        help="peered (VPC/VNet peering with Event Store Cloud, the default) or public (a "
        "public cluster with an IP allowlist, reached through a NAT); public when --egress-ip "
        "is given.",
    ),
    egress_ip: list[str] = typer.Option(
        [],
        "--egress-ip",
        help="Public topology: the NAT's static address the cluster's allowlist names (repeat "
        "for each).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    timeout: float = typer.Option(
        5.0, "--timeout", min=0.1, help="Seconds each network step may take."
    ),
) -> None:
    """Check DNS, TCP, TLS, credentials, cluster and latency of both endpoints, and the
    network: the function's subnets inside the peering range (peered), or the egress IPs, the
    target's public address and its allowlist (public).

    Exits 0 when nothing failed, 1 when a check failed, 2 on a configuration error.
    """
    out = Console(highlight=False)
    job = load_job(config)
    try:
        report = run_preflight(
            job,
            subnets=subnet,
            peering_cidr=peering_cidr,
            cloud=cloud.value if cloud else None,  # type: ignore[arg-type]
            vnet_is_peered_directly=vnet_peered_directly,
            network_mode=network_mode.value if network_mode else None,  # type: ignore[arg-type]
            egress_ips=egress_ip,
            timeout=timeout,
        )
    except ConfigError as e:
        err.print(f"[red]configuration error:[/] {escape(str(e))}", soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None
    if json_out:
        typer.echo(report.model_dump_json(indent=2))
    else:
        print_report(out, report)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FAILED)


def print_report(out: Console, report: PreflightReport) -> None:
    out.print(f"preflight of job [bold]{escape(report.job_id)}[/]")
    out.print(f"  source: {escape(report.source)}")
    out.print(f"  target: {escape(report.target)}")
    table = Table(show_lines=True)
    table.add_column("", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("result")
    for check in report.checks:
        text = escape(check.detail)
        if check.fix:
            text += f"\n[bold]fix:[/] {escape(check.fix)}"
        table.add_row(_MARKS[check.status], escape(check.name), text)
    out.print(table)
    colour = "green" if report.ok else "red"
    out.print(f"[{colour}]{escape(report.summary())}[/]")

"""`esdb-relay plan`: how long copying the job's store takes and what it costs, per cloud, as
one chain and sharded (core/capacity.py, docs/capacity.md).

It reads the source (to count or estimate its events) and asks the target which append it
offers; it writes nothing. Exit codes: 0 answered, 1 a side could not be read, 2 the job or
the command line is wrong.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from core.capacity import load_figures
from core.capacity_plan import CapacityPlan, Settings
from core.capacity_plan import plan as make_plan
from core.capacity_prices import CLOUDS
from core.errors import ConfigError, RelayError
from handlers.cli.common import (
    ConfigOption,
    ConnectTimeout,
    connection_error,
    connections,
    console,
    fail,
    load_job,
)


def plan(
    config: Path | None = ConfigOption,
    target_hours: float = typer.Option(
        24.0, "--target-hours", min=0.01, help="Finish within this many hours (sets K)."
    ),
    target_write_rate: float | None = typer.Option(
        None,
        "--target-write-rate",
        min=1,
        help="Events/s the target accepts from all writers (default: not bounded).",
    ),
    target_size: str | None = typer.Option(
        None,
        "--target-size",
        help="Event Store Cloud size whose write capacity is documented (C4), instead of "
        "--target-write-rate.",
    ),
    source_scan_rate: float | None = typer.Option(
        None,
        "--source-scan-rate",
        min=1,
        help="Records/s of $all the source serves to all readers (K shards scan it K times).",
    ),
    max_shards: int = typer.Option(
        64,
        "--max-shards",
        min=1,
        help="The most shards to offer (1: one chain, the only way to keep the global order).",
    ),
    events: int | None = typer.Option(
        None, "--events", min=1, help="Plan for this many events instead of counting the source."
    ),
    count_up_to: int = typer.Option(
        100_000,
        "--count-up-to",
        min=1,
        help="Count $all exactly up to this many records; past them, estimate.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
    connect_timeout: float = ConnectTimeout,
) -> None:
    """How long the copy takes and what it costs on each cloud: K shards, hours, dollars and
    what bounds it, for the job's real store (counted, or estimated and said so)."""
    job = load_job(config)
    if target_write_rate is not None and target_size is not None:
        raise fail("error:", "give --target-write-rate or --target-size, not both")
    try:
        settings = Settings(
            target_hours=target_hours,
            target_write_rate=target_write_rate,
            target_size=target_size,
            source_scan_rate=source_scan_rate,
            max_shards=max_shards,
            events=events,
            count_up_to=count_up_to,
        )
        figures = load_figures()
        with connections(job) as (source, target):
            deadline = time.monotonic() + connect_timeout
            source.retry_deadline = target.retry_deadline = deadline
            answer = make_plan(job, source, target, settings, figures)
    except ConfigError as e:
        raise fail("configuration error:", str(e)) from None
    except ValueError as e:
        raise fail("error:", str(e)) from None
    except RelayError as e:
        raise connection_error(job, e, "error:", connect_timeout) from None
    if json_out:
        console.print_json(answer.model_dump_json())
    else:
        show(answer)


def _usd(value: float) -> str:
    return f"${value:,.0f}" if value >= 10 else f"${value:,.2f}"


def _hours(value: float) -> str:
    if value < 1 / 60:
        return "< 1 min"
    if value < 1:
        return f"{value * 60:.0f} min"
    return f"{value:,.1f} h" if value < 100 else f"{value:,.0f} h"


CLOUD_LABELS = {"aws": "AWS Lambda", "gcp": "GCP Cloud Functions", "azure": "Azure Functions"}


def show(answer: CapacityPlan) -> None:
    store = answer.store
    say = console.print
    say(f"[bold]plan for job {escape(answer.job_id)}[/]", highlight=False)
    size = f"{store.events:,} events to copy" + (
        f" (of {store.records:,} records in $all)" if store.records != store.events else ""
    )
    say(f"store: {size}: {escape(store.basis)}", soft_wrap=True, highlight=False)
    say(
        f"mode: {escape(answer.mode)} ({escape(answer.write_path_basis)})",
        soft_wrap=True,
        highlight=False,
    )
    if answer.figure_note:
        say(f"[yellow]note:[/] {escape(answer.figure_note)}", soft_wrap=True, highlight=False)
    table = Table(title=f"K shards to finish within {answer.target_hours:g} hours")
    table.add_column("cloud")
    table.add_column("one chain", justify="right")
    for name in ("K", "hours", "USD"):
        table.add_column(name, justify="right")
    table.add_column("bound")
    for a in answer.clouds:
        one, k = a.one_chain, a.sharded
        table.add_row(
            CLOUD_LABELS.get(a.cloud, a.cloud),
            f"{_hours(one.hours)}, {_usd(one.usd)}",
            str(k.shards),
            _hours(k.hours),
            _usd(k.usd),
            k.bound,
        )
    say(table)
    say(
        "deployments: " + "; ".join(f"{c.name}: {c.deployment}" for c in CLOUDS),
        soft_wrap=True,
        highlight=False,
    )
    notes = list(dict.fromkeys(n for a in answer.clouds for n in a.sharded.notes))
    for note in notes:
        say(f"[yellow]•[/] {escape(note)}", soft_wrap=True, highlight=False)
    say("assumptions:", highlight=False)
    for line in answer.assumptions:
        say(f"  - {escape(line)}", soft_wrap=True, highlight=False)

"""`esdb-relay status`: where the job stands, once or refreshed in place (`--watch`).

It reads the source and the checkpoint store only: not the target, not the transform, so it
works while the target is down or the job's transform module cannot be imported here."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from core.checkpoint import CheckpointStore, open_store
from core.config import JobConfig
from core.errors import ConfigError, RelayError
from core.eventstore import EventStore
from core.progress import Progress, measure
from handlers.cli.common import (
    EXIT_FAILED,
    ConfigOption,
    ConnectTimeout,
    connection,
    console,
    fail,
    load_job,
    stop_on_signals,
)
from handlers.cli.progress import STATE_STYLE, position_text, status_view
from handlers.cli.progress import _duration as duration


@contextmanager
def status_source(
    job: JobConfig, connect_timeout: float
) -> Iterator[tuple[EventStore, CheckpointStore]]:
    """The job's source and checkpoint store; exit 2 on a configuration error, 1 when the
    source cannot be reached or refuses the credentials."""
    try:
        with connection(job, "source") as source, open_store(job.checkpoint_store) as store:
            source.retry_deadline = time.monotonic() + connect_timeout
            source.head_position()
            yield source, store
    except ConfigError as e:
        raise fail("configuration error:", str(e)) from None
    except RelayError as e:
        raise fail("error:", str(e), EXIT_FAILED) from None


def status(
    config: Path | None = ConfigOption,
    json_out: bool = typer.Option(False, "--json", help="Print the status as JSON."),
    watch: bool = typer.Option(
        False, "--watch", "-w", help="Refresh in place until Ctrl-C (with --json: one line each)."
    ),
    interval: float = typer.Option(
        2.0, "--interval", min=0.2, help="Seconds between refreshes with --watch."
    ),
    count: int | None = typer.Option(
        None, "--count", min=1, help="With --watch: stop after this many refreshes."
    ),
    connect_timeout: float = ConnectTimeout,
) -> None:
    """Where the job stands: state, lag, rates, ETA, the relay's lease, warnings; a sharded job
    as one, then a row per shard. Reads the source and the checkpoint store only (not the
    target, not the transform)."""
    job = load_job(config)
    with status_source(job, connect_timeout) as (source, store):

        def read() -> Progress:
            try:
                return measure(job, source, store)
            except RelayError as e:
                raise fail("error:", str(e), EXIT_FAILED) from None

        if not watch:
            _show_status(read(), json_out)
            return
        stop = stop_on_signals()
        if json_out:
            for n in itertools.count(1):
                console.print(read().model_dump_json(), soft_wrap=True, highlight=False)
                if (count is not None and n >= count) or stop.wait(interval):
                    return
        with Live(job_view(read()), console=console, auto_refresh=False) as live:
            for n in itertools.count(2):
                if (count is not None and n > count) or stop.wait(interval):
                    return
                live.update(job_view(read()), refresh=True)


def _show_status(progress: Progress, json_out: bool) -> None:
    if json_out:
        console.print_json(progress.model_dump_json())
    else:
        console.print(job_view(progress))


def job_view(p: Progress) -> RenderableType:
    """The job as one, then (a sharded job) a row per shard."""
    if not p.shards:
        return status_view(p)
    return Group(status_view(p), shards_view(p))


def shards_view(p: Progress) -> RenderableType:
    """A sharded job's shards: each its own chain, lease and checkpoint."""
    table = Table(
        title=f"{len(p.shards)} shards (global order is not kept across shards: each keeps "
        "the order of its own streams)",
        title_justify="left",
    )
    for column in ("shard", "state", "position", "lag", "rate", "ETA", "relay", "last slice"):
        table.add_column(column)
    table.add_column("written", justify="right")
    for s in p.shards:
        lag = "unknown" if s.lag_events is None else f"{s.lag_events:,}"
        if s.lag_events is not None and not p.lag_events_exact:
            lag = "~" + lag
        rate = "-" if s.copy_rate is None else f"{s.copy_rate:,.0f}/s"
        eta = (
            "caught up"
            if s.caught_up
            else ("-" if s.eta_seconds is None else duration(s.eta_seconds))
        )
        if s.lease is not None:
            relay = f"lease: {s.lease.owner} until {s.lease.expires_at:%H:%M:%S}"
        else:
            relay = "running" if s.relay_running else "not running"
        last = "never"
        if s.last_slice_at is not None:
            last = f"{duration((p.checked_at - s.last_slice_at).total_seconds())} ago"
            if s.last_slice_seconds is not None:
                last += f" ({s.last_slice_seconds:.1f}s)"
        table.add_row(
            str(s.index),
            Text(s.state, style=STATE_STYLE[s.state]),
            position_text(s.position),
            lag,
            rate,
            eta,
            relay,
            Text(last + (f" failed: {s.last_error}" if s.last_error else "")),
            f"{s.events_written:,}",
        )
    return table

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
from rich.live import Live

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
from handlers.cli.progress import status_view


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
    """Where the job stands: state, lag, rates, ETA, the relay's lease, warnings. Reads the
    source and the checkpoint store only (not the target, not the transform)."""
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
        with Live(status_view(read()), console=console, auto_refresh=False) as live:
            for n in itertools.count(2):
                if (count is not None and n > count) or stop.wait(interval):
                    return
                live.update(status_view(read()), refresh=True)


def _show_status(progress: Progress, json_out: bool) -> None:
    if json_out:
        console.print_json(progress.model_dump_json())
    else:
        console.print(status_view(progress))

"""The `esdb-relay` command: the core engine run by hand or in a loop."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from core.config import JobConfig
from core.engine import SliceResult
from core.errors import ConfigError, RelayError
from core.invocation import MAX_POSITION
from core.logs import configure as configure_logging
from core.relay import Relay
from esdb_emulator import Emulator, FaultConfig
from esdb_emulator.faults import DEFAULT_MAX_APPEND_SIZE
from handlers.cli.cutover_cmd import cutover
from handlers.cli.package import package
from handlers.cli.preflight_cmd import preflight
from handlers.cli.progress import RunProgress
from handlers.cli.projections_cmd import projections_app
from handlers.cli.stores import register_cloud_store
from handlers.cli.subscriptions_cmd import migrate_subscriptions, translate
from handlers.cli.verify_cmd import verify

app = typer.Typer(
    help="Migrate an EventStoreDB/KurrentDB database into another, exactly once.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

ConfigOption = typer.Option(
    None,
    "--config",
    "-c",
    help="Job file (.toml/.yaml/.json); ESDB_RELAY_* env vars override it.",
)
LogFormat = typer.Option("text", "--log-format", help="Log lines as 'text' or 'json'.")


def load_job(config: Path | None) -> JobConfig:
    try:
        return JobConfig.load(file=config)
    except ConfigError as e:
        err.print(f"[red]configuration error:[/] {e}")
        raise typer.Exit(2) from None


ConnectTimeout = typer.Option(
    10.0, "--connect-timeout", help="Seconds to keep trying to reach each endpoint at start."
)


@contextmanager
def open_relay(job: JobConfig, connect_timeout: float = 10.0) -> Iterator[Relay]:
    register_cloud_store(job.checkpoint_store)
    try:
        with Relay(job, connect_timeout=connect_timeout) as relay:
            yield relay
    except ConfigError as e:
        err.print(f"[red]configuration error:[/] {e}")
        raise typer.Exit(2) from None
    except RelayError as e:
        err.print(f"[red]error:[/] {e}")
        raise typer.Exit(1) from None


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@app.command()
def run(
    config: Path | None = ConfigOption,
    until_caught_up: bool = typer.Option(
        False, "--until-caught-up", help="Stop at the source's tail instead of following it."
    ),
    idle_seconds: float = typer.Option(1.0, help="Pause between slices once caught up."),
    log_format: str = LogFormat,
    progress: bool = typer.Option(True, help="Show a progress bar (off with --no-progress)."),
    connect_timeout: float = ConnectTimeout,
) -> None:
    """Copy the source's $all into the target, slice after slice, from the checkpoint."""
    configure_logging(_log_format(log_format))
    job = load_job(config)
    stop = _stop_on_signals()
    with open_relay(job, connect_timeout) as relay:
        last = _run_with_progress(
            relay,
            RunProgress(console, relay, enabled=progress),
            until_caught_up=until_caught_up,
            stop=stop,
            idle_seconds=idle_seconds,
        )
    _summary(last)


@app.command()
def backfill(
    config: Path | None = ConfigOption,
    from_position: int = typer.Option(
        ..., "--from", min=0, max=MAX_POSITION, help="First $all commit position to copy."
    ),
    to_position: int | None = typer.Option(
        None,
        "--to",
        min=0,
        max=MAX_POSITION,
        help="Last $all commit position to copy (default: the current head).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Read and plan, write nothing."),
    log_format: str = LogFormat,
    connect_timeout: float = ConnectTimeout,
) -> None:
    """Copy a range of $all again, under its own checkpoint; events already there are skipped."""
    configure_logging(_log_format(log_format))
    job = load_job(config)
    with open_relay(job, connect_timeout) as relay:
        end = to_position if to_position is not None else relay.source.head_position()
        if end < from_position:
            err.print(f"[red]--to {end} is before --from {from_position}[/]")
            raise typer.Exit(2)
        range_job = job.model_copy(
            update={"job_id": f"{job.job_id}.backfill-{from_position}-{end}"}
        )
        start_after = from_position - 1 if from_position > 0 else None
        if dry_run:
            result = relay.run_once(
                start_after=start_after, stop_at=end, dry_run=True, job=range_job
            )
        else:
            result = _run_with_progress(
                relay,
                RunProgress(console, relay, job_id=range_job.job_id, end=end),
                start_after=start_after,
                stop_at=end,
                job=range_job,
                stop=_stop_on_signals(),
            )
    _summary(result)


@app.command()
def status(
    config: Path | None = ConfigOption,
    json_out: bool = typer.Option(False, "--json", help="Print the status as JSON."),
    connect_timeout: float = ConnectTimeout,
) -> None:
    """Where the job stands: position, lag, rates, ETA, warnings."""
    job = load_job(config)
    with open_relay(job, connect_timeout) as relay:
        try:
            s = relay.status()
        except RelayError as e:
            err.print(f"[red]error:[/] {e}")
            raise typer.Exit(1) from None
    if json_out:
        console.print_json(s.model_dump_json())
        return
    table = Table(title=f"job {s.job_id}", show_header=False)
    table.add_row("position", "start of $all" if s.position is None else f"{s.position:,}")
    table.add_row("source head", f"{s.head_position:,}")
    table.add_row("lag", f"{s.lag_bytes:,} bytes" + _events(s.lag_events_estimate))
    table.add_row("events written", f"{s.events_written:,} (of {s.events_read:,} read)")
    table.add_row("relay rate", _rate(s.relay_rate))
    table.add_row("source write rate", _rate(s.source_write_rate))
    table.add_row("ETA", _eta(s.eta_seconds, s.caught_up))
    table.add_row("last slice", str(s.last_slice_at or "never"))
    if s.last_error:
        table.add_row("last error", s.last_error)
    console.print(table)
    for warning in s.warnings:
        console.print(f"[yellow]warning:[/] {warning}")


app.command("verify")(verify)
app.command("translate")(translate)
app.command("migrate-subscriptions")(migrate_subscriptions)
app.command("preflight")(preflight)
app.command("cutover")(cutover)
app.command("package")(package)
app.add_typer(projections_app, name="projections")


@app.command()
def emulator(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(2113, help="Port to listen on (0 = any free port)."),
    tls: bool = typer.Option(
        False, "--tls", help="Serve TLS: a generated CA and a node certificate it signed."
    ),
    cert_dir: Path | None = typer.Option(
        None, help="With --tls: keep the CA and node certificate here (reused at restart)."
    ),
    tls_self_signed: bool = typer.Option(
        False, "--tls-self-signed", help="With --tls: a dev-mode self-signed certificate."
    ),
    server_version: str | None = typer.Option(
        None,
        help="Behave as KurrentDB 24.10, 25.1 (default) or 26.1: the v2 appends each serves.",
    ),
    snapshot: str | None = typer.Option(
        None, help="File to load the data from at start and save it to at stop."
    ),
    multi_append: bool | None = typer.Option(
        None, help="--no-multi-append: an older node (as --server-version 24.10)."
    ),
    latency_ms: float = typer.Option(0.0, help="Latency added to every call, in milliseconds."),
    jitter_ms: float = typer.Option(0.0, help="Random extra latency up to this many ms."),
    unavailable_rate: float = typer.Option(0.0, help="Fraction of calls answered UNAVAILABLE."),
    unavailable_next: int = typer.Option(0, help="The next N calls answer UNAVAILABLE."),
    deadline_rate: float = typer.Option(0.0, help="Fraction of calls answered DEADLINE_EXCEEDED."),
    deadline_next: int = typer.Option(0, help="The next N calls answer DEADLINE_EXCEEDED."),
    not_leader_next: int = typer.Option(0, help="The next N calls answer 'not leader'."),
    reset_read_after: int | None = typer.Option(
        None, help="Reset reads after this many events (UNAVAILABLE mid-read)."
    ),
    reset_reads_next: int = typer.Option(
        0, help="With --reset-read-after: only the next N reads (0 = every read)."
    ),
    max_append_size: int = typer.Option(
        DEFAULT_MAX_APPEND_SIZE, help="Maximum append size in bytes (the server's MaxAppendSize)."
    ),
    methods: str = typer.Option(
        "", help="Comma-separated gRPC methods the faults apply to (default: every method)."
    ),
    seed: int | None = typer.Option(None, help="Seed for random faults."),
) -> None:
    """Run the EventStoreDB-compatible emulator used by the demo, tests and benchmarks."""
    faults = FaultConfig(
        latency_ms=latency_ms,
        jitter_ms=jitter_ms,
        unavailable_rate=unavailable_rate,
        unavailable_next=unavailable_next,
        deadline_rate=deadline_rate,
        deadline_next=deadline_next,
        not_leader_next=not_leader_next,
        reset_read_after=reset_read_after,
        reset_reads_next=reset_reads_next,
        max_append_size=max_append_size,
        methods=frozenset(m.strip() for m in methods.split(",") if m.strip()),
        seed=seed,
    )
    try:
        db = Emulator(
            host,
            port,
            tls=tls,
            faults=faults,
            snapshot_path=snapshot,
            multi_append=multi_append,
            server_version=server_version,
            cert_dir=cert_dir,
            self_signed=tls_self_signed,
        )
    except ValueError as e:
        err.print(f"[red]emulator:[/] {e}")
        raise typer.Exit(2) from None
    db.start()
    console.print(f"[bold green]esdb emulator[/] listening on {db.target}")
    console.print(f"connection string: {db.uri}")
    stop = _stop_on_signals()
    try:
        while not stop.is_set():
            time.sleep(0.2)
    finally:
        db.stop()
        console.print("emulator stopped" + (f"; data saved to {snapshot}" if snapshot else ""))


@app.command()
def demo(
    events: int = typer.Option(20_000, help="Events in the generated source history."),
    streams: int = typer.Option(1_000, help="Streams in the generated source history."),
) -> None:
    """Two emulators, a generated history, a migration killed and resumed, then verify."""
    from handlers.cli.demo import run_demo

    raise typer.Exit(run_demo(console, events=events, streams=streams))


def _run_with_progress(relay: Relay, bar: RunProgress, **options: Any) -> SliceResult | None:
    with bar:
        try:
            return relay.run(on_slice=bar.update, **options)
        except RelayError as e:
            err.print(f"[red]stopped:[/] {e}")
            raise typer.Exit(1) from None


def _log_format(value: str) -> Literal["json", "text"]:
    if value not in ("json", "text"):
        err.print(f"[red]--log-format must be 'json' or 'text', not {value!r}[/]")
        raise typer.Exit(2)
    return value  # type: ignore[return-value]


def _summary(result: SliceResult | None) -> None:
    if result is None:
        console.print("stopped before the first slice")
        return
    state = "caught up" if result.caught_up else "stopped"
    where = "start of $all" if result.position is None else f"{result.position:,}"
    console.print(f"{state} at position {where}; last slice: {json.dumps(_brief(result))}")


def _brief(result: SliceResult) -> dict[str, object]:
    return {
        "read": result.events_read,
        "written": result.events_written,
        "skipped": result.events_skipped,
        "seconds": round(result.seconds, 2),
    }


def _events(value: int | None) -> str:
    return "" if value is None else f" (~{value:,} events)"


def _rate(value: float | None) -> str:
    return "unknown" if value is None else f"{value:,.0f} events/s"


def _eta(seconds: float | None, caught_up: bool) -> str:
    if caught_up:
        return "caught up"
    if seconds is None:
        return "unknown"
    return time.strftime("%H:%M:%S", time.gmtime(seconds))


if __name__ == "__main__":  # pragma: no cover
    app()

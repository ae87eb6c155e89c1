"""The `esdb-relay` command: the core engine run by hand or in a loop."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import typer

from core.config import JobConfig
from core.engine import SliceResult
from core.errors import ConfigError, RelayError
from core.invocation import MAX_POSITION
from core.logs import SliceLog
from core.logs import configure as configure_logging
from core.relay import Relay, RunOutcome
from core.shards import Shard
from handlers.cli.common import (
    ConfigOption,
    ConnectTimeout,
    LogFormat,
    StopSignal,
    connection_error,
    console,
    err,
    fail,
    load_job,
    open_relay,
    resume_command,
    stop_on_signals,
)
from handlers.cli.cutover_cmd import cutover
from handlers.cli.dashboard import dashboard
from handlers.cli.emulator_cmd import emulator
from handlers.cli.metrics_server import SliceFeed, serve_metrics
from handlers.cli.package import package
from handlers.cli.plan_cmd import plan
from handlers.cli.preflight_cmd import preflight
from handlers.cli.progress import RunProgress, summary
from handlers.cli.projections_cmd import projections_app
from handlers.cli.status_cmd import status
from handlers.cli.subscriptions_cmd import migrate_subscriptions, translate
from handlers.cli.verify_cmd import verify

app = typer.Typer(
    help="Migrate an EventStoreDB/KurrentDB database into another, exactly once.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: no `<bool>` beside a flag, nothing boxed
    context_settings={"help_option_names": ["-h", "--help"]},  # every command
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"esdb-relay {_version('esdb-relay')} (esdbclient {_version('esdbclient')})")
        raise typer.Exit()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Migrate an EventStoreDB/KurrentDB database into another, exactly once."""


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
    metrics_port: int | None = typer.Option(
        None,
        "--metrics-port",
        min=0,
        max=65535,
        help="Serve the job's metrics for Prometheus (OpenMetrics) on this port, at /metrics.",
    ),
    metrics_host: str = typer.Option(
        "127.0.0.1",
        "--metrics-host",
        help="Address the metrics port listens on (0.0.0.0: every interface, e.g. in a container).",
    ),
    shard_index: int | None = typer.Option(
        None,
        "--shard",
        min=0,
        help="Run this shard of a job split into shards (shards > 1): one process per shard, "
        "0..shards-1. Each keeps the order of its own streams; global order is not kept "
        "across shards.",
    ),
) -> None:
    """Copy the source's $all into the target, slice after slice, from the checkpoint."""
    configure_logging(_log_format(log_format))
    job = load_job(config)
    _check_shard_option(job, shard_index)
    stop = stop_on_signals()
    with (
        open_relay(job, connect_timeout) as relay,
        serve_metrics(relay, metrics_port, metrics_host) as feed,
    ):
        shard = _shard(relay, shard_index)
        key = shard.key if shard is not None else job.job_id
        if feed is not None:
            feed.shard = shard  # its metrics are the job's (core/metrics.SHARDS)
        if not until_caught_up:  # following the tail: one line, then a heartbeat
            relay.slice_log = SliceLog()
        outcome = _run_with_progress(
            relay,
            RunProgress(console, relay, enabled=progress, job_id=key),
            until_caught_up=until_caught_up,
            stop=stop,
            idle_seconds=idle_seconds,
            feed=feed,
            shard=shard,
        )
        _summary(outcome, relay, key)
    _exit_if_stopped(stop)


def _check_shard_option(job: JobConfig, index: int | None) -> None:
    """`--shard` is required by a job of several shards, within 0..shards-1, and refused by
    a job of one chain."""
    if index is None and job.shards > 1:
        raise fail(
            f"this job has {job.shards} shards:",
            f"run one process per shard with --shard 0..{job.shards - 1} (each keeps the order "
            "of its own streams; global order is not kept across shards)",
        )
    if index is not None and job.shards == 1:
        raise fail(
            f"--shard {index}: this job is not split into shards (shards = 1):",
            "drop --shard, or set shards (ESDB_RELAY_SHARDS) for a new job id",
        )
    if index is not None and index >= job.shards:
        raise fail(
            f"--shard {index} is out of range:",
            f"this job has {job.shards} shards, numbered 0..{job.shards - 1}",
        )


def _shard(relay: Relay, index: int | None, job: JobConfig | None = None) -> Shard | None:
    """The shard this process runs, from the job's plan (made and stored by the first shard
    to start), said in one line."""
    if index is None:
        return None
    job = job or relay.job
    try:
        plan = relay.shard_plan(job)
    except ConfigError as e:
        raise fail("cannot run this shard:", str(e)) from None
    except RelayError as e:
        raise connection_error(relay.job, e, "stopped:") from None
    assert plan is not None
    shard = plan.shard(job.job_id, index)
    console.print(
        f"{shard} of job {job.job_id!r} (checkpoint {shard.key!r}): the streams whose "
        f"names end as the plan gives this shard ({plan.suffix_length}-character suffixes); "
        "global order is not kept across shards",
        soft_wrap=True,
        highlight=False,
    )
    return shard


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
    shard_index: int | None = typer.Option(
        None,
        "--shard",
        min=0,
        help="Copy this shard's part of the range, for a job split into shards (shards > 1): "
        "one process per shard, 0..shards-1. The range is split as a job of its own.",
    ),
) -> None:
    """Copy a range of $all again, under its own checkpoint; events already there are skipped."""
    configure_logging(_log_format(log_format))
    job = load_job(config)
    _check_shard_option(job, shard_index)
    if job.shards > 1 and to_position is None:
        raise fail(
            "--to is needed for a job split into shards:",
            "every shard of a range must copy up to the same end (the range's checkpoints are "
            "named after it); give the same --from and --to to each --shard",
        )
    with open_relay(job, connect_timeout) as relay:
        end = to_position if to_position is not None else relay.source.head_position()
        if end < from_position:
            err.print(f"[red]--to {end} is before --from {from_position}[/]")
            raise typer.Exit(2)
        range_job = job.for_range(from_position, end)
        start_after = from_position - 1 if from_position > 0 else None
        # A sharded job's range has its own plan, in its own record (key RANGE.shard-I).
        shard = _shard(relay, shard_index, range_job)
        key = shard.key if shard is not None else range_job.job_id
        stop = StopSignal()
        if dry_run:
            try:
                outcome = relay.plan(
                    start_after=start_after, stop_at=end, job=range_job, shard=shard
                )
            except RelayError as e:
                err.print(f"[red]stopped:[/] {e}")
                raise typer.Exit(1) from None
        else:
            stop = stop_on_signals()
            outcome = _run_with_progress(
                relay,
                RunProgress(console, relay, job_id=key, end=end),
                start_after=start_after,
                stop_at=end,
                job=range_job,
                stop=stop,
                shard=shard,
            )
        _summary(outcome, relay, key)
    # The range's checkpoint is named after its end: resuming needs the same --to.
    _exit_if_stopped(stop, [] if to_position is not None else ["--to", str(end)])


app.command("status")(status)
app.command("verify")(verify)
app.command("translate")(translate)
app.command("migrate-subscriptions")(migrate_subscriptions)
app.command("preflight")(preflight)
app.command("plan")(plan)
app.command("cutover")(cutover)
app.command("dashboard")(dashboard)
app.command("package")(package)
app.add_typer(projections_app, name="projections")
app.command("emulator")(emulator)


@app.command()
def demo(
    events: int = typer.Option(20_000, help="Events in the generated source history."),
    streams: int = typer.Option(1_000, help="Streams in the generated source history."),
) -> None:
    """Two emulators, a generated history, a migration killed and resumed, then verify."""
    from handlers.cli.demo import run_demo

    raise typer.Exit(run_demo(console, events=events, streams=streams))


def _run_with_progress(
    relay: Relay, bar: RunProgress, feed: SliceFeed | None = None, **options: Any
) -> RunOutcome:
    def on_slice(result: SliceResult) -> None:
        bar.update(result)
        if feed:
            feed.slice(result)

    with bar:
        try:
            return relay.run(
                on_slice=on_slice, on_failure=feed.failure if feed else None, **options
            )
        except RelayError as e:
            raise connection_error(relay.job, e, "stopped:") from None


def _exit_if_stopped(stop: StopSignal, extra: list[str] | None = None) -> None:
    """Stopped by a signal: say how to resume, exit 130 (Ctrl-C) or 143 (SIGTERM)."""
    if not stop.is_set():
        return
    console.print(
        f"interrupted: what was written is committed; resume with: {resume_command(extra)}",
        soft_wrap=True,
    )
    raise typer.Exit(stop.exit_code)


def _log_format(value: str) -> Literal["json", "text"]:
    if value not in ("json", "text"):
        err.print(f"[red]--log-format must be 'json' or 'text', not {value!r}[/]")
        raise typer.Exit(2)
    return value  # type: ignore[return-value]


def _summary(outcome: RunOutcome, relay: Relay, job_id: str) -> None:
    """This run's totals (every slice, each kind of record named) and the job's."""
    try:
        checkpoint = relay.store.load(job_id)
    except RelayError:
        checkpoint = None
    for line in summary(outcome, checkpoint):
        console.print(line, soft_wrap=True, highlight=False)


if __name__ == "__main__":  # pragma: no cover
    app(prog_name="esdb-relay")

"""`esdb-relay verify`: compare the target with the job's filtered source, stream by stream.

Exit codes: 0 the target holds exactly what the source holds, 1 differences were found,
2 the job could not be verified (configuration, connection or transform error), 130
interrupted (with --state, the progress is saved: run the same command again to continue).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from core.checkpoint import open_store
from core.config import JobConfig
from core.errors import ConfigError, RelayError
from core.eventstore import EventStore
from core.shard_plans import stored_plan
from core.shards import ShardPlan
from core.tools.verify import SAMPLE_SCAN, VerifyReport, VerifyState, public_endpoint
from core.tools.verify import verify as run_verify
from handlers.cli.common import EXIT_ERROR, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, err


class _Interrupted(Exception):
    """Ctrl-C (or SIGTERM) was received; verify stops between two streams."""


def verify(
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Job file (.toml, .yaml, .json); ESDB_RELAY_* env vars override it.",
    ),
    sample: int | None = typer.Option(
        None,
        "--sample",
        min=1,
        help="Check a random sample of this many streams (no scan for extra target streams).",
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the sample: the same seed, the same streams."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    show: int = typer.Option(
        50, "--show", min=0, help="Differences listed in the table (--json lists up to 1000)."
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, max=64, help="Streams checked concurrently."
    ),
    state: Path | None = typer.Option(
        None,
        "--state",
        help="Save progress to this file (periodically and on Ctrl-C) and resume from it: "
        "run the same command again to continue a large verify where it stopped.",
    ),
) -> None:
    """Prove the target holds exactly what the source holds: ids, types, data, order, deletes.

    A sharded job is compared stream by stream (each stream's order), never by the order of
    $all across streams, which shards do not keep; differences are attributed to shards.

    Exits 0 when equal, 1 on any difference, 2 when the job cannot be verified.
    """
    out = Console(highlight=False)
    try:
        job = JobConfig.load(file=config)
    except ConfigError as e:
        err.print(f"[red]{escape(str(e))}[/]", soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None
    if state is not None and not state.parent.is_dir():
        err.print(
            f"[red]--state {escape(str(state))}: no such directory {escape(str(state.parent))}[/]",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_ERROR)
    if not json_out:
        if state is not None and state.exists():
            out.print(f"resuming from {escape(str(state))}{_saved_progress(state)}")
        elif sample is not None:
            out.print(f"[dim]{escape(SAMPLE_SCAN)}[/]", soft_wrap=True)
        out.print(
            f"verifying job [bold]{escape(job.job_id)}[/]: "
            f"{escape(public_endpoint(job.source.get_secret_value()))} → "
            f"{escape(public_endpoint(job.target.get_secret_value()))}"
        )
    try:
        report = _run(job, sample, seed, workers, err, state)
    except RelayError as e:
        err.print(f"[red]verify failed: {escape(str(e))}[/]", soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None
    except OSError as e:
        err.print(f"[red]verify failed: cannot write the state file: {escape(str(e))}[/]")
        raise typer.Exit(EXIT_ERROR) from None
    except (KeyboardInterrupt, _Interrupted):
        if state is None:
            where = ""
        elif state.exists():
            where = f"; progress saved to {escape(str(state))}: run the same command to continue"
        else:
            where = " during the scan of $all, before any stream was checked: nothing to resume"
        err.print(f"[yellow]interrupted{where}[/]")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if json_out:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
        sys.stdout.flush()
    else:
        _print_report(out, report, show)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FAILED)


def _saved_progress(state: Path) -> str:
    try:
        saved = VerifyState.model_validate_json(state.read_bytes())
    except (OSError, ValueError):
        return ""  # verify itself reports an unreadable file
    return f": {saved.done:,} of {len(saved.streams):,} streams already checked"


def _run(
    job: JobConfig,
    sample: int | None,
    seed: int,
    workers: int,
    err: Console,
    state: Path | None = None,
) -> VerifyReport:
    with (
        _stop_on_signals(err) as stop,
        EventStore(job.source.get_secret_value(), side="source") as source,
        EventStore(job.target.get_secret_value(), side="target") as target,
        Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        ) as bar,
    ):
        task = bar.add_task("scanning the source's $all (bytes)", total=None)

        def scanned(side: str, position: int, head: int) -> None:
            if stop.is_set():
                raise _Interrupted
            description = f"scanning the {side}'s $all (bytes)"
            bar.update(task, description=description, completed=position, total=max(head, 1))

        def progress(done: int, total: int) -> None:
            if stop.is_set():
                raise _Interrupted
            bar.update(task, description="checking streams", completed=done, total=total)

        return run_verify(
            job,
            source,
            target,
            plan=_plan(job),
            sample=sample,
            seed=seed,
            progress=progress,
            workers=workers,
            state=state,
            scan_progress=scanned,
        )


def _plan(job: JobConfig) -> ShardPlan | None:
    """A sharded job's stored plan (its differences are attributed to shards by it)."""
    if job.shards == 1:
        return None
    with open_store(job.checkpoint_store) as store:
        return stored_plan(store, job.job_id)


@contextmanager
def _stop_on_signals(err: Console) -> Iterator[threading.Event]:
    """The first Ctrl-C stops verify between two streams (so --state saves a consistent
    progress; an exception inside a gRPC read can leave the channel unable to close); the
    second quits at once."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():
            os._exit(EXIT_INTERRUPTED)
        stop.set()
        err.print("[yellow]stopping after the stream being checked (again to quit at once)[/]")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _print_report(out: Console, report: VerifyReport, show: int) -> None:
    summary = Table(title="verify", show_header=False)
    summary.add_column("what")
    summary.add_column("value", justify="right")
    checked = f"{report.streams_checked:,}"
    if report.sample is not None:
        checked += f" (sample of {report.streams_in_source:,}, seed {report.seed})"
    summary.add_row("streams in source (filtered)", f"{report.streams_in_source:,}")
    summary.add_row("streams checked", checked)
    summary.add_row("streams equal", f"{report.streams_equal:,}")
    summary.add_row("streams differing", f"{report.streams_differing:,}")
    extra = f"{report.extra_streams:,}" if report.extra_streams_checked else "not checked (sample)"
    summary.add_row("extra streams on target", extra)
    summary.add_row("events compared", f"{report.events_compared:,}")
    if report.events_unverified:
        summary.add_row("target events not verifiable", f"{report.events_unverified:,}")
    if report.events_dead_lettered:
        summary.add_row(
            "source events dead-lettered (not missing)", f"{report.events_dead_lettered:,}"
        )
    summary.add_row("differences", f"{report.differences_total:,}")
    if report.shards is not None:
        by = ", ".join(
            f"shard {i}: {n:,}" for i, n in sorted(report.differences_by_shard.items()) if n
        )
        summary.add_row("shards", f"{report.shards}" + (f" (differences: {by})" if by else ""))
    summary.add_row("time", f"{report.seconds:.1f}s ({report.events_per_second:,.0f} events/s)")
    out.print(summary)
    for note in report.notes:
        out.print(f"[dim]note: {escape(note)}[/]")
    if report.differences:
        table = Table(title="differences")
        sharded = report.shards is not None
        if sharded:
            table.add_column("shard", no_wrap=True)
        table.add_column("stream", overflow="fold", ratio=1)
        table.add_column("kind", no_wrap=True)
        table.add_column("rev src→tgt", no_wrap=True)
        table.add_column("detail", overflow="fold", ratio=2)
        for d in report.differences[:show]:
            detail = escape(d.detail) + (f"\n[dim]event {d.event_id}[/]" if d.event_id else "")
            table.add_row(
                *([] if not sharded else ["-" if d.shard is None else str(d.shard)]),
                escape(d.stream),
                d.kind.value,
                _revisions(d.source_revision, d.target_revision),
                detail,
            )
        if show:
            out.print(table)
        hidden = report.differences_total - min(show, len(report.differences))
        if hidden > 0:
            out.print(
                f"… and {hidden:,} more difference(s); --json lists up to "
                f"{report.max_differences:,}"
            )
    if report.ok:
        out.print("[bold green]OK[/]: the target holds exactly what the source holds")
    else:
        out.print(
            f"[bold red]DIFFERENT[/]: {report.differences_total:,} difference(s) in "
            f"{report.streams_differing + report.extra_streams:,} stream(s)"
        )


def _revisions(source: int | None, target: int | None) -> str:
    if source is None and target is None:
        return ""
    return f"{'-' if source is None else source}→{'-' if target is None else target}"

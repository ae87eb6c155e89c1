"""`esdb-relay cutover`: the guided, checked cutover (core.tools.cutover) rendered with rich.

It never stops the writers itself: it asks the operator to (or, with --yes, takes it that the
automation calling it did), then checks nothing is written any more.

Exit codes: 0 completed (target verified, checkpoints printed, report written); 1 a check
failed (verify found differences, writes after the quiet period, a catch-up checkpoint that
could not be translated); 2 bad usage, configuration or connection; 3 the relay is not
caught up (refused without --wait) or a wait timed out; 4 aborted by the operator, or refused
at once when there is no terminal to ask and no --yes. The report is written in each case.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.prompt import Confirm
from rich.table import Table

from core.config import JobConfig
from core.errors import ConfigError
from core.stores.registry import register_provider
from core.tools.cutover import (
    EXIT_ABORTED,
    EXIT_ERROR,
    Cutover,
    CutoverObserver,
    CutoverOptions,
    CutoverReport,
    Lag,
    QuietWatch,
    StepRecord,
)
from core.tools.cutover.report import configured_job_id, not_started, write_reports


def cutover(
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Job file (.toml, .yaml, .json); ESDB_RELAY_* env vars override it.",
    ),
    yes: bool = typer.Option(
        False,
        "--yes",
        "-y",
        help="Do not ask: the writers are (being) stopped by whoever runs this (automation).",
    ),
    wait: bool = typer.Option(
        False, "--wait", help="Wait for the relay to catch up instead of refusing."
    ),
    lag_timeout: float = typer.Option(
        600.0, "--lag-timeout", min=0.1, help="Seconds --wait waits for the relay to catch up."
    ),
    quiet_seconds: float = typer.Option(
        30.0,
        "--quiet-seconds",
        min=0.1,
        help="Seconds without a new user event on the source that count as writers stopped.",
    ),
    quiet_timeout: float = typer.Option(
        1800.0, "--quiet-timeout", min=0.1, help="Seconds to wait for that quiet period."
    ),
    copy_timeout: float = typer.Option(
        600.0, "--copy-timeout", min=0.1, help="Seconds to wait for the final events' copy."
    ),
    poll_seconds: float = typer.Option(
        1.0, "--poll-seconds", min=0.01, help="How often the source and checkpoint are read."
    ),
    run_relay: bool = typer.Option(
        False,
        "--run-relay",
        help="Run the relay's slices here until the final copy (else the deployed schedule).",
    ),
    sample: int | None = typer.Option(
        None, "--sample", min=1, help="Verify a random sample of this many streams (default all)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the --sample."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="Verify workers."),
    checkpoints: Path | None = typer.Option(
        None,
        "--checkpoints",
        help="Catch-up subscription checkpoints to translate (the translate --file format: "
        "JSON lines or .csv of name, kind, stream, position|revision).",
    ),
    apply_subscriptions: bool = typer.Option(
        False,
        "--apply",
        help="Create/update the persistent subscriptions on the target (else only listed).",
    ),
    report_dir: Path = typer.Option(
        Path("."), "--report-dir", help="Where the markdown and JSON reports are written."
    ),
) -> None:
    """Cut over to the target: caught up, writers stopped, final copy, verify, checkpoints.

    Exit: 0 done, 1 a check failed, 2 usage/config/connection, 3 not caught up/timed out,
    4 aborted.
    """
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    if report_dir.exists() and not report_dir.is_dir():
        err.print(
            f"[red]--report-dir {escape(str(report_dir))} is a file, not a directory: the "
            "cutover did not start, nothing was done[/]",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_ERROR)
    flags = {
        "wait": wait,
        "lag_timeout": lag_timeout,
        "quiet_seconds": quiet_seconds,
        "quiet_timeout": quiet_timeout,
        "copy_timeout": copy_timeout,
        "poll_seconds": poll_seconds,
        "run_relay": run_relay,
        "sample": sample,
        "seed": seed,
        "verify_workers": workers,
        "checkpoints_file": checkpoints,
        "apply_subscriptions": apply_subscriptions,
        "report_dir": report_dir,
    }
    try:
        if checkpoints is not None and not checkpoints.is_file():
            raise ConfigError(
                f"--checkpoints: no such file {checkpoints}",
                hint="give the file of catch-up checkpoints to translate (translate --file format)",
            )
        job = JobConfig.load(file=config)
        register_provider(job.checkpoint_store)
        options = CutoverOptions.model_validate(flags)
    except (ConfigError, ValidationError) as e:
        refused = not_started(
            f"configuration error: {e}",
            job_id=configured_job_id(config),
            options={k: str(v) if isinstance(v, Path) else v for k, v in flags.items()},
        )
        _finish(out, err, refused, report_dir)
    out.print(f"cutover of job [bold]{escape(job.job_id)}[/]")
    observer = RichObserver(out, assume_yes=yes)
    procedure = Cutover(job, options, observer=observer)
    try:
        with _stop_on_signals(procedure, observer, err):
            report = procedure.run()
    except OSError as e:  # the report directory cannot be written
        err.print(f"[red]cannot write the report: {escape(str(e))}[/]", soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None
    finally:
        observer.close()
    _print_result(out, report)
    raise typer.Exit(report.exit_code)


def _finish(out: Console, err: Console, report: CutoverReport, report_dir: Path) -> NoReturn:
    """A cutover that did not start: its report written (when the directory can be), its
    result printed, its exit code."""
    try:
        write_reports(report, report_dir)
    except OSError as e:
        err.print(f"[red]cannot write the report: {escape(str(e))}[/]", soft_wrap=True)
    _print_result(out, report)
    raise typer.Exit(report.exit_code)


@contextmanager
def _stop_on_signals(procedure: Cutover, observer: RichObserver, err: Console) -> Iterator[None]:
    """Ctrl-C (or SIGTERM) stops the cutover at its next check, so the report is written and no
    gRPC call is cut in the middle; at the prompt it answers no; a second one quits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        if procedure.abort.is_set():
            os._exit(EXIT_ABORTED)
        procedure.abort.set()
        if observer.prompting:
            raise KeyboardInterrupt
        err.print("[yellow]stopping at the next check (again to quit at once)[/]")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class RichObserver(CutoverObserver):
    """Steps as headings, waits as live lines, verify as a progress bar."""

    def __init__(self, out: Console, *, assume_yes: bool, interactive: bool | None = None) -> None:
        self.out = out
        self.assume_yes = assume_yes
        self.interactive = sys.stdin.isatty() if interactive is None else interactive
        self.live: Live | None = None
        self.bar: Progress | None = None
        self.task = None
        self.number = 0
        self.prompting = False

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def _line(self, text: str) -> None:
        if self.live is None:
            self.live = Live(text, console=self.out, transient=True, refresh_per_second=4)
            self.live.start()
        else:
            self.live.update(text)

    def step(self, name: str, title: str) -> None:
        self.close()
        self.number += 1
        self.out.print(f"\n[bold]{self.number}. {escape(title)}[/]")

    def step_done(self, record: StepRecord) -> None:
        self.close()
        mark = "[green]ok[/]" if record.status == "ok" else "[red]failed[/]"
        self.out.print(f"   {mark}: {escape(record.detail)}", soft_wrap=True)

    def lag(self, lag: Lag, waited: float, timeout: float) -> None:
        if lag.caught_up:
            return
        self._line(f"   waiting for the relay: {lag.describe()} — {waited:.0f}s of {timeout:g}s")

    def confirm_writers_stopped(self) -> bool:
        self.close()
        self.out.print(
            "   [bold yellow]Stop every workload that writes to the source now.[/] "
            "esdb-relay never stops them itself; it watches the source's $all to check that "
            "nothing is written any more."
        )
        if self.assume_yes:
            self.out.print("   --yes: taking it that the writers are being stopped")
            return True
        self.prompting = True
        try:
            return Confirm.ask("   Are all the writers stopped?", console=self.out, default=False)
        except EOFError:  # the terminal went away: no answer is not a yes
            self.out.print("\n   no answer (end of input): taking it as no")
            return False
        finally:
            self.prompting = False

    def cannot_confirm(self) -> str | None:
        if self.assume_yes or self.interactive:
            return None
        return (
            "no terminal to ask whether the writers are stopped (standard input is not a "
            "terminal) and no --yes: nothing was done. Run cutover in a terminal, or pass --yes "
            "when the automation calling it stops the writers itself"
        )

    def quiet(self, watch: QuietWatch, timeout: float) -> None:
        streams = f", lately in {', '.join(watch.recent_streams)}" if watch.recent_streams else ""
        self._line(
            f"   quiet for {watch.quiet_for:.1f}s of {watch.quiet_seconds:g}s; "
            f"{watch.writes_seen:,} event(s) written since the watch began{escape(streams)}; "
            f"{watch.waited_seconds:.0f}s of {timeout:g}s"
        )

    def copying(self, lag: Lag, waited: float, timeout: float) -> None:
        if not lag.caught_up:
            self._line(f"   copying the final events: {lag.describe()} — {waited:.0f}s")

    def verify_progress(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = Progress(
                TextColumn("   verifying streams"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.out,
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("verify", total=total)
        self.bar.update(self.task, completed=done, total=total)  # type: ignore[arg-type]


def _print_result(out: Console, report: CutoverReport) -> None:
    if report.shards:
        table = Table(title=f"{len(report.shards)} shards (global order is not kept across shards)")
        for column in ("shard", "checkpoint", "records written", "records read"):
            table.add_column(column, justify="right")
        for shard in report.shards:
            table.add_row(
                str(shard.index),
                "start of $all"
                if shard.checkpoint_position is None
                else f"{shard.checkpoint_position:,}",
                f"{shard.events_written:,}",
                f"{shard.events_read:,}",
            )
        out.print(table)
    if report.persistent_subscriptions:
        applied = "applied" if report.persistent_subscriptions_applied else "not applied"
        table = Table(title=f"persistent subscriptions ({applied})")
        for column in ("stream", "group", "action", "source checkpoint", "target start"):
            table.add_column(column, overflow="fold")
        for p in report.persistent_subscriptions:
            table.add_row(
                escape(p.stream),
                escape(p.group),
                p.action,
                escape(p.source_checkpoint or "-"),
                escape(p.start_text or "-"),
            )
        out.print(table)
    if report.catch_up_file:
        table = Table(title="catch-up subscription checkpoints")
        for column in ("name", "source", "target", "error"):
            table.add_column(column, overflow="fold")
        for row in report.catch_up_checkpoints:
            stream = row.get("stream")
            source = f"{stream} @ {row.get('revision')}" if stream else f"$all @ {row['position']}"
            target = row.get("target_revision") if stream else row.get("target_position")
            shown = "start" if target in (None, "") and not row.get("error") else str(target or "-")
            table.add_row(
                escape(str(row.get("name") or "")),
                escape(source),
                shown,
                escape(str(row.get("error") or "")),
            )
        out.print(table)
    colour = (
        "green"
        if report.exit_code == 0
        else ("yellow" if report.exit_code == EXIT_ABORTED else "red")
    )
    out.print(
        f"\n[bold {colour}]{report.outcome.upper()}[/] (exit {report.exit_code}): "
        f"{escape(report.message)}",
        soft_wrap=True,
    )
    if report.next_steps:
        out.print("[bold]next:[/]")
        for n, step in enumerate(report.next_steps, 1):
            out.print(f"  {n}. {escape(step)}", soft_wrap=True)
    for path in report.report_files:
        out.print(f"report: {escape(path)}")

"""What every `esdb-relay` command shares: its consoles, its options, its exit codes, loading
the job (and the cloud checkpoint store its URL names), and opening its connections."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import typer
from rich.console import Console
from rich.markup import escape

from core.config import JobConfig
from core.errors import ConfigError, RelayError
from core.eventstore import EventStore
from core.relay import Relay
from core.stores.registry import register_provider
from core.tools.preflight import connection_failure, diagnose, side_of

EXIT_OK = 0
EXIT_FAILED = 1  # a check failed, a difference was found, or (run) an endpoint was unreachable
EXIT_ERROR = 2  # the command could not do its work: the configuration or the command line
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (a container stop, a deploy): stopped cleanly all the same
# `cutover` answers with its report's own exit codes (core/tools/cutover/report.py).

console = Console()
err = Console(stderr=True, highlight=False)

ConfigOption = typer.Option(
    None,
    "--config",
    "-c",
    help="Job file (.toml, .yaml, .json); ESDB_RELAY_* env vars override it.",
)
LogFormat = typer.Option("text", "--log-format", help="Log lines as 'text' or 'json'.")
ConnectTimeout = typer.Option(
    10.0, "--connect-timeout", help="Seconds to keep trying to reach each endpoint at start."
)


def fail(headline: str, detail: str = "", code: int = EXIT_ERROR) -> typer.Exit:
    """Print an error line to stderr (the headline in red); the exit to raise."""
    err.print(f"[red]{escape(headline)}[/] {escape(detail)}".rstrip(), soft_wrap=True)
    return typer.Exit(code)


def load_job(config: Path | None) -> JobConfig:
    """The job, with the cloud checkpoint store its URL names registered; exit 2 on a
    configuration error or when that store's cloud SDK is not installed."""
    try:
        job = JobConfig.load(file=config)
        # A cloud store is used with that cloud's extra installed (core/stores/registry.py).
        register_provider(job.checkpoint_store)
    except ConfigError as e:
        raise fail("configuration error:", str(e)) from None
    return job


@contextmanager
def open_relay(job: JobConfig, connect_timeout: float = 10.0) -> Iterator[Relay]:
    """The job's connections and checkpoint store; exit 2 on a configuration error, 1 when
    an endpoint cannot be reached or refuses the credentials."""
    try:
        with Relay(job, connect_timeout=connect_timeout) as relay:
            yield relay
    except ConfigError as e:
        raise fail("configuration error:", str(e)) from None
    except RelayError as e:
        raise connection_error(job, e, "error:", connect_timeout) from None


def connection_error(
    job: JobConfig, error: RelayError, headline: str, timeout: float = 10.0
) -> typer.Exit:
    """An error reaching a side, named as preflight names it: that side is probed (DNS, TCP,
    TLS, credentials) and its first failing check printed with its fix, instead of a gRPC
    status and "usually temporary"; the exit (1) to raise."""
    side = side_of(error) if connection_failure(error) else None
    check = diagnose(job, side, min(timeout, 5.0)) if side is not None else None
    if check is None:
        also = f" (esdb-relay preflight checks the {side} and the network)" if side else ""
        return fail(headline, f"{error}{also}", EXIT_FAILED)
    err.print(f"[red]{escape(headline)}[/] {escape(error.message)}", soft_wrap=True)
    err.print(
        f"[red]preflight's check {escape(check.name)} fails:[/] {escape(check.detail)}",
        soft_wrap=True,
    )
    if check.fix:
        err.print(f"[bold]fix:[/] {escape(check.fix)}", soft_wrap=True)
    err.print("esdb-relay preflight checks both sides and the network in full", soft_wrap=True)
    return typer.Exit(EXIT_FAILED)


@contextmanager
def connections(job: JobConfig) -> Iterator[tuple[EventStore, EventStore]]:
    """The job's source and target, closed after (their errors are the caller's)."""
    with connection(job, "source") as source, connection(job, "target") as target:
        yield source, target


def connection(job: JobConfig, side: Literal["source", "target"]) -> EventStore:
    """One side of the job (a context manager), for a command that needs only that one."""
    url = job.source if side == "source" else job.target
    return EventStore(url.get_secret_value(), side=side)


class StopSignal(threading.Event):
    """Set when the process is asked to stop; remembers by which signal."""

    signum: int | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_TERMINATED if self.signum == signal.SIGTERM else EXIT_INTERRUPTED


RELAY_STOPPING = (
    "stopping after the append in flight; what is written is committed (again to quit at once)"
)


def stop_on_signals(message: str | None = RELAY_STOPPING) -> StopSignal:
    """Set when the process is asked to stop (Ctrl-C, SIGTERM), `message` printed; for the
    relay: it stops after the append in flight and commits what it wrote. A second signal
    quits at once."""
    stop = StopSignal()

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():
            os._exit(128 + signum)
        stop.signum = signum
        stop.set()
        if message:
            err.print(f"[yellow]{escape(message)}[/]", soft_wrap=True)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    return stop


def resume_command(extra: list[str] | None = None) -> str:
    """The command line that was run (plus `extra`), to run again: it resumes from the
    checkpoint."""
    return shlex.join(["esdb-relay", *sys.argv[1:], *(extra or [])])

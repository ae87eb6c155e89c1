"""`esdb-relay emulator`: the EventStoreDB-compatible server of the demo, tests and benchmarks,
with every fault the Python API offers as a flag. Imported only when the command runs."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import typer

from handlers.cli.common import console, err, stop_on_signals


def emulator(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(2113, help="Port to listen on (0 = any free port)."),
    tls: bool = typer.Option(
        False,
        "--tls/--no-tls",
        help="Serve TLS: a CA and a node certificate it signed, kept across restarts.",
    ),
    cert_dir: Path | None = typer.Option(
        None,
        help="With --tls: where the CA and node certificate are kept (reused at restart; "
        "default: $XDG_CACHE_HOME or ~/.cache, then esdb-relay/emulator-tls/HOST).",
        show_default=False,
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
    http_500_next: int = typer.Option(
        0, help="The next N calls end in HTTP 500, as a node ends one it cannot name a stream in."
    ),
    reset_read_after: int | None = typer.Option(
        None, help="Reset reads after this many events (UNAVAILABLE mid-read)."
    ),
    reset_reads_next: int = typer.Option(
        0, help="With --reset-read-after: only the next N reads (0 = every read)."
    ),
    max_append_size: int | None = typer.Option(
        None, help="Maximum append size in bytes (the server's MaxAppendSize; 1,048,576)."
    ),
    methods: str = typer.Option(
        "", help="Comma-separated gRPC methods the faults apply to (default: every method)."
    ),
    seed: int | None = typer.Option(None, help="Seed for random faults."),
) -> None:
    """Run the EventStoreDB-compatible emulator used by the demo, tests and benchmarks."""
    from esdb_emulator import Emulator, FaultConfig  # only this command needs the server
    from esdb_emulator.faults import DEFAULT_MAX_APPEND_SIZE

    faults = FaultConfig(
        latency_ms=latency_ms,
        jitter_ms=jitter_ms,
        unavailable_rate=unavailable_rate,
        unavailable_next=unavailable_next,
        deadline_rate=deadline_rate,
        deadline_next=deadline_next,
        not_leader_next=not_leader_next,
        http_500_next=http_500_next,
        reset_read_after=reset_read_after,
        reset_reads_next=reset_reads_next,
        max_append_size=max_append_size or DEFAULT_MAX_APPEND_SIZE,
        methods=frozenset(m.strip() for m in methods.split(",") if m.strip()),
        seed=seed,
    )
    if tls and not tls_self_signed and cert_dir is None:
        cert_dir = default_cert_dir(host)
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
    console.print(f"[bold green]esdb emulator[/] listening on {db.target}", soft_wrap=True)
    # One line whatever the terminal's width, redirected or not: it is copied as it is.
    typer.echo(f"connection string: {db.uri}")
    if db.tls and cert_dir is not None:
        typer.echo(f"CA: {db.ca_file} (the same at every restart; --cert-dir to choose where)")
    stop = stop_on_signals(message=None)
    try:
        while not stop.is_set():
            time.sleep(0.2)
    finally:
        db.stop()
        console.print("emulator stopped" + (f"; data saved to {snapshot}" if snapshot else ""))


def default_cert_dir(host: str) -> Path:
    """Where `--tls` keeps the emulator's CA when no --cert-dir is given: the same path at
    every restart, so a job's tlsCaFile stays valid."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "esdb-relay" / "emulator-tls" / re.sub(r"[^A-Za-z0-9_.-]", "_", host)

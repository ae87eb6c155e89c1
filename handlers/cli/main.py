"""The `esdb-relay` command."""

from __future__ import annotations

import signal
import threading
import time

import typer
from rich.console import Console

from esdb_emulator import Emulator, FaultConfig

app = typer.Typer(
    help="Migrate an EventStoreDB/KurrentDB database into another, exactly once.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


@app.command()
def emulator(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(2113, help="Port to listen on (0 = any free port)."),
    tls: bool = typer.Option(False, "--tls", help="Serve TLS with a generated self-signed cert."),
    latency_ms: float = typer.Option(0.0, help="Latency added to every call, in milliseconds."),
    jitter_ms: float = typer.Option(0.0, help="Random extra latency up to this many ms."),
    snapshot: str | None = typer.Option(
        None, help="File to load the data from at start and save it to at stop."
    ),
    seed: int | None = typer.Option(None, help="Seed for random faults."),
) -> None:
    """Run the EventStoreDB-compatible emulator used by the demo, tests and benchmarks."""
    faults = FaultConfig(latency_ms=latency_ms, jitter_ms=jitter_ms, seed=seed)
    db = Emulator(host, port, tls=tls, faults=faults, snapshot_path=snapshot)
    db.start()
    console.print(f"[bold green]esdb emulator[/] listening on {db.target}")
    console.print(f"connection string: {db.uri}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set():
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        db.stop()
        console.print("emulator stopped" + (f"; data saved to {snapshot}" if snapshot else ""))


@app.command()
def demo(
    events: int = typer.Option(20_000, help="Events in the generated source history."),
    streams: int = typer.Option(1_000, help="Streams in the generated source history."),
) -> None:
    """Start an emulator with a generated history and read it back with esdbclient."""
    from handlers.cli.demo import run_demo

    raise typer.Exit(run_demo(console, events=events, streams=streams))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()

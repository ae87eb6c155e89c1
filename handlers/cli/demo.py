"""`esdb-relay demo`: the first command a newcomer runs.

For now it shows the emulator working with the real esdbclient: it generates a realistic
history (interleaved streams, soft deletes, tombstones, stream metadata, `$ce` links,
non-JSON metadata) and reads the whole `$all` back over TLS with a progress bar.
"""

from __future__ import annotations

import time
from collections import Counter

from esdbclient import EventStoreDBClient
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
    )


def run_demo(console: Console, *, events: int, streams: int) -> int:
    started = time.perf_counter()
    with Emulator(tls=True) as source:
        console.print(f"[bold]source emulator[/] on {source.target} (TLS, admin/***)")
        workload = Workload(events=events, streams=streams)
        with _progress(console) as bar:
            task = bar.add_task("generating history", total=events, rate="")
            counts = generate(source.store, workload, progress=lambda n: bar.advance(task, n))
        client = EventStoreDBClient(source.uri)
        try:
            total = len(source.store)
            kinds: Counter[str] = Counter()
            read_started = time.perf_counter()
            with _progress(console) as bar:
                task = bar.add_task("reading $all via esdbclient", total=total, rate="")
                for n, event in enumerate(client.read_all(filter_exclude=[]), 1):
                    kinds[_kind(event.type)] += 1
                    if n % 1000 == 0:
                        rate = n / (time.perf_counter() - read_started)
                        bar.update(task, completed=n, rate=f"{rate:,.0f} ev/s")
                bar.update(task, completed=total)
            read_seconds = time.perf_counter() - read_started
        finally:
            client.close()
    table = Table(title="source $all")
    table.add_column("records")
    table.add_column("count", justify="right")
    for kind, count in sorted(kinds.items()):
        table.add_row(kind, f"{count:,}")
    console.print(table)
    console.print(
        f"generated {counts['events']:,} events in {streams:,} streams "
        f"({counts['soft_deleted']} soft-deleted, {counts['tombstoned']} tombstoned, "
        f"{counts['metadata']} with metadata, {counts['links']:,} links); "
        f"read {sum(kinds.values()):,} records in {read_seconds:.1f}s; "
        f"demo took {time.perf_counter() - started:.1f}s"
    )
    if sum(kinds.values()) != total:
        console.print("[red]read back fewer records than the source holds[/]")
        return 1
    return 0


def _kind(event_type: str) -> str:
    if event_type == "$>":
        return "link events ($>)"
    if event_type == "$metadata":
        return "stream metadata ($metadata)"
    if event_type == "$streamDeleted":
        return "tombstones ($streamDeleted)"
    if event_type.startswith("$"):
        return "other system events"
    return "user events"

"""`esdb-relay demo`: the first command a newcomer runs.

Two emulators (TLS, admin/changeit): a source with a generated, realistic history
(interleaved streams, soft deletes, tombstones, `$maxCount`/`$tb` metadata, `$ce` links,
non-JSON metadata) and an empty target. The relay runs as a real `esdb-relay run` process;
the demo SIGKILLs it part-way, starts it again to show it resuming from its checkpoint, then
verifies the target stream by stream.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from core.checkpoint import open_store
from core.config import JobConfig
from core.eventstore import EventStore
from core.progress import slices_of
from core.tools.verify import verify
from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate

JOB_ID = "demo-migration"
KILL_AT = 0.4  # fraction of the source log after which the relay process is killed
LEASE_TTL = 3  # seconds; a real deployment uses at least the function's time-out


def run_demo(console: Console, *, events: int, streams: int) -> int:
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="esdb-relay-demo-") as tmp,
        Emulator(tls=True) as source,
        Emulator(tls=True) as target,
    ):
        console.print(
            f"[bold]source[/] emulator on {source.target}, [bold]target[/] emulator on "
            f"{target.target} (TLS, admin/***)"
        )
        with _bar(console) as bar:
            task = bar.add_task("generating source history", total=events)
            counts = generate(
                source.store,
                Workload(events=events, streams=streams),
                progress=lambda n: bar.advance(task, n),
            )
        console.print(
            f"source: {counts['events']:,} events in {streams:,} streams, "
            f"{counts['links']:,} $ce links, {counts['metadata']} streams with metadata, "
            f"{counts['soft_deleted']} soft-deleted, {counts['tombstoned']} tombstoned "
            f"— {len(source.store):,} records in $all"
        )
        store_url = f"sqlite:///{Path(tmp) / 'checkpoints.db'}"
        env = {
            **os.environ,
            "ESDB_RELAY_JOB_ID": JOB_ID,
            "ESDB_RELAY_SOURCE": source.uri,
            "ESDB_RELAY_TARGET": target.uri,
            "ESDB_RELAY_CHECKPOINT_STORE": store_url,
            "ESDB_RELAY_BUDGET__MAX_EVENTS": "2000",
            # The killed process keeps the job's lease until it expires; the resumed one waits.
            "ESDB_RELAY_LEASE_TTL_SECONDS": str(LEASE_TTL),
        }
        store = open_store(store_url)
        head = source.store.last_position

        def position() -> int:
            checkpoint = store.load(JOB_ID)
            return checkpoint.position.commit if checkpoint and checkpoint.position else 0

        with _bar(console, BYTES) as bar:
            task = bar.add_task("relay (first run)", total=head)
            relay = _start_relay(env, Path(tmp) / "relay-1.log")
            while position() < KILL_AT * head and relay.poll() is None:
                bar.update(task, completed=position())
                time.sleep(0.05)
            relay.send_signal(signal.SIGKILL)
            relay.wait()
            killed_at = position()
            bar.update(task, completed=killed_at, description="relay (SIGKILLed)")
        console.print(
            f"[yellow]killed the relay with SIGKILL[/] at checkpoint {killed_at:,} "
            f"({killed_at / head:.0%} of the source log); starting it again — it waits "
            f"{LEASE_TTL}s for the dead process's lease to expire, then resumes from the checkpoint"
        )
        with _bar(console, BYTES) as bar:
            task = bar.add_task("relay (resumed)", total=head, completed=killed_at)
            relay = _start_relay(env, Path(tmp) / "relay-2.log")
            while relay.poll() is None:
                bar.update(task, completed=position())
                time.sleep(0.05)
            bar.update(task, completed=position())
        if relay.returncode != 0:
            console.print(f"[red]the relay failed:[/]\n{(Path(tmp) / 'relay-2.log').read_text()}")
            return 1
        checkpoint = store.load(JOB_ID)
        history = store.history(JOB_ID, limit=200)
        store.close()
        on_target = _records(target)

        job = JobConfig.from_payload({"job_id": JOB_ID, "source": source.uri, "target": target.uri})
        with (
            EventStore(source.uri, side="source") as src,
            EventStore(target.uri, side="target") as dst,
            _bar(console) as bar,
        ):
            task = bar.add_task("verifying stream by stream", total=None)
            scan = "scanning the {}'s $all"
            report = verify(
                job,
                src,
                dst,
                progress=lambda done, total: bar.update(
                    task, description="verifying stream by stream", completed=done, total=total
                ),
                scan_progress=lambda side, done, total: bar.update(
                    task, description=scan.format(side), completed=done, total=total
                ),
            )
    written = checkpoint.events_written if checkpoint else 0
    not_copied = checkpoint.events_filtered if checkpoint else 0
    table = Table(title="migration", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("what it is", overflow="fold")
    table.add_row(
        "slices",
        f"{len(slices_of(history)):,}",
        "slices the two relay runs recorded",
    )
    copied = on_target["events"] + on_target["metadata"]
    what = (
        f"{on_target['events']:,} events + {on_target['metadata']:,} stream metadata records "
        f"({counts['metadata']:,} streams' settings, {counts['soft_deleted']:,} soft deletes): "
        "metadata is copied too"
    )
    if written != copied:
        # The checkpoints count what committed slices wrote: what the killed run wrote after
        # its last commit, the resumed run finds on the target and neither writes nor counts.
        what += (
            f"; the relay's checkpoints count {written:,} of them (the killed run's last "
            "writes, found on the target by the resumed run, are not counted twice)"
        )
    table.add_row("records written", f"{copied:,}", what)
    table.add_row(
        "streams deleted",
        f"{on_target['tombstones']:,}",
        "tombstones, copied as deletes (not counted as records written)",
    )
    table.add_row(
        "records not copied",
        f"{not_copied:,}",
        "$ce links and system records: the target's own projections rebuild links",
    )
    table.add_row(
        "streams verified",
        f"{report.streams_checked:,}",
        f"every stream of the source: the generator's bursts reached {report.streams_checked:,} "
        f"of its {streams:,} stream names",
    )
    table.add_row(
        "events compared",
        f"{report.events_compared:,}",
        "events a stream read shows, id and bytes, in order (deletes, $maxCount and $tb hide "
        "the rest)",
    )
    table.add_row("differences", f"{report.differences_total:,}", "")
    console.print(table)
    seconds = time.perf_counter() - started
    if report.ok:
        console.print(f"[bold green]target equals the source[/] — demo took {seconds:.1f}s")
        return 0
    console.print(f"[bold red]{report.differences_total} differences[/]")
    for difference in report.differences[:10]:
        console.print(f"  {difference}")
    return 1


def _start_relay(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "handlers.cli.main", "run", "--until-caught-up", "--no-progress"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


BYTES = "{task.completed:,.0f} of {task.total:,.0f} bytes of the source's $all"


def _bar(console: Console, label: str | None = None) -> Progress:
    """A bar; `label` (BYTES) says what its figures count, else `done/total` items."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn(label) if label else MofNCompleteColumn(),
        console=console,
    )


def _records(db: Emulator) -> dict[str, int]:
    """What a database holds of the user's: events, stream metadata records, tombstones."""
    found = {"events": 0, "metadata": 0, "tombstones": 0}
    for record in db.store.iter_all():
        if record.stream.startswith("$$") and not record.stream.startswith("$$$"):
            found["metadata"] += 1
        elif record.stream.startswith("$"):
            continue
        elif record.type == "$streamDeleted":
            found["tombstones"] += 1
        elif not record.type.startswith("$"):
            found["events"] += 1
    return found

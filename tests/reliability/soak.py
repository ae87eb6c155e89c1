"""Kill soak: a real relay process SIGKILLed at random points over many runs, each resumed,
with the source taking writes between runs; at the end target == filtered source, event for
event, with zero duplicates and zero gaps.

    python -m tests.reliability.soak --kills 200 --seed 1 [--mode partitioned --partitions 8]
        [--odd-streams 2 --slice-events 100 --append-events 20 --no-multi-append]

Each run starts tests/crash/relay_child.py and kills it one of two ways (seeded): at a random
step boundary of the engine ("read", "append", "written", "commit", "committed"), after a
random delay (so an in-flight append is cut), or by the parent at a random wall-clock time
(anywhere: start-up, connecting, reading). Some runs also get UNAVAILABLE faults on the source
or the target. Bounded: stops after `kills` kills or `max_runs` runs, whichever comes first.
At the end every stream of both emulators is read (forwards, backwards, its metadata) with a
deadline: a read that reaches it is reported in `unanswered_reads` and fails the soak (issue
17's wedged `ünï.strm-…` stream; `--odd-streams` adds such streams to the workload).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from esdbclient import EventStoreDBClient
from esdbclient.exceptions import DeadlineExceeded, EventStoreDBClientException

from core.checkpoint import open_store
from core.config import FilterConfig
from esdb_emulator import Emulator
from esdb_emulator.store import ANY, JSON, ProposedEvent, Store
from esdb_emulator.workload import Workload, generate
from tests.reliability.helpers import CHILD, ROOT, check_replica, child_env

STEPS = ("read", "append", "written", "commit", "committed")
EXCLUDE = "^cart-"
RUN_TIMEOUT = 120.0
PROBE_TIMEOUT = 5.0


@dataclass
class SoakReport:
    mode: str
    seed: int
    runs: int = 0
    kills: int = 0
    step_kills: int = 0
    timer_kills: int = 0
    completed_runs: int = 0
    lease_lost_runs: int = 0  # runs that found their lease expired mid-slice and stopped
    checkpoint_regressions: int = 0
    faults_injected: int = 0  # kills + the emulators' injected faults
    emulator_faults: int = 0  # UNAVAILABLE answers injected by the emulators
    source_events: int = 0
    events_checked: int = 0
    differences: int = 0
    duplicates: int = 0
    missing: int = 0
    out_of_order: bool = False
    # Stream reads (forwards, backwards, metadata) on either emulator that did not answer
    # within PROBE_TIMEOUT: the wedged `ünï.strm-…` stream of issue 17.
    unanswered_reads: list[str] = field(default_factory=list)
    seconds: float = 0.0


def write_more(store: Store, rng: random.Random, count: int) -> None:
    """Source writes between runs: new events on existing and new streams."""
    for _ in range(count):
        stream = f"{rng.choice(('order', 'cart', 'invoice'))}-live-{rng.randrange(30):03d}"
        store.append(
            stream,
            ANY,
            [
                ProposedEvent(
                    str(uuid.UUID(int=rng.getrandbits(128))),
                    "LiveEvent",
                    JSON,
                    json.dumps({"n": rng.randrange(10**6)}).encode(),
                    b'{"live":true}',
                )
            ],
        )


def run_soak(
    kills: int,
    *,
    seed: int = 1,
    mode: str = "ordered",
    partitions: int = 1,
    events: int = 3000,
    max_runs: int | None = None,
    log: bool = False,
    odd_streams: int = 0,
    slice_events: int = 300,
    append_events: int = 25,
    multi_append: bool = True,
) -> SoakReport:
    rng = random.Random(f"soak-{seed}")  # not `seed`: generate() draws event ids from that
    report = SoakReport(mode=mode, seed=seed)
    started = time.monotonic()
    max_runs = max_runs or kills * 3
    with (
        tempfile.TemporaryDirectory(prefix="esdb-soak-") as tmp,
        Emulator() as source,
        Emulator() as target,
    ):
        workload = Workload(events=events, streams=120, odd_streams=odd_streams, seed=seed)
        generate(source.store, workload)
        extra = {
            "ESDB_RELAY_BUDGET__MAX_EVENTS": str(slice_events),
            "ESDB_RELAY_BATCH__MAX_EVENTS": str(append_events),
            "ESDB_RELAY_MULTI_APPEND": "true" if multi_append else "false",
            # A killed process holds the lease until it expires; keep that short.
            "ESDB_RELAY_LEASE_TTL_SECONDS": "2",
            "ESDB_RELAY_FILTERS__EXCLUDE_STREAMS": json.dumps([EXCLUDE]),
            "ESDB_RELAY_MODE": mode,
            "ESDB_RELAY_PARTITIONS": str(partitions),
        }
        store_url = f"sqlite:///{Path(tmp) / 'cp.db'}"
        env = child_env("soak", source, target, store_url, **extra)
        store = open_store(store_url)
        committed = -1
        while report.kills < kills and report.runs < max_runs:
            report.runs += 1
            write_more(source.store, rng, rng.randrange(0, 60))
            for emulator in (source, target):
                emulator.faults.update(
                    unavailable_rate=rng.choice((0.0, 0.0, 0.02, 0.05)),
                    latency_ms=rng.choice((0.0, 0.0, 20.0)),
                    methods={"BatchAppend", "Append"} if emulator is target else set(),
                    seed=rng.randrange(2**31),
                )
            killed, how = _one_run(env, rng)
            if how == "lease-lost":
                report.lease_lost_runs += 1
            checkpoint = store.load("soak")
            position = checkpoint.position.commit if checkpoint and checkpoint.position else -1
            report.checkpoint_regressions += position < committed
            committed = max(committed, position)
            report.kills += killed
            report.step_kills += killed and how == "step"
            report.timer_kills += killed and how == "timer"
            report.completed_runs += not killed
            if log:
                print(f"run {report.runs}: {how} {'killed' if killed else 'completed'}", flush=True)
        for emulator in (source, target):
            report.emulator_faults += sum(emulator.faults.injected.values())
            emulator.faults.reset()
        # The last run: no kill, no fault, to completion.
        _run_child(env, ["none", "0"], timeout=RUN_TIMEOUT)
        report.faults_injected = report.kills + report.emulator_faults
        filters = FilterConfig(exclude_streams=[EXCLUDE])
        check = check_replica(
            source.store, target.store, filters, ordered=mode == "ordered" and partitions == 1
        )
        report.source_events = sum(1 for _ in source.store.iter_all())
        report.events_checked = check.events_checked
        report.differences = len(check.differences)
        report.duplicates = check.duplicates
        report.missing = check.missing
        report.out_of_order = check.out_of_order
        report.unanswered_reads = _unanswered_reads(source) + _unanswered_reads(target)
        store.close()
    report.seconds = round(time.monotonic() - started, 1)
    return report


def _unanswered_reads(emulator: Emulator) -> list[str]:
    """Every stream read through esdbclient with a deadline; an error is an answer, reaching
    the deadline is not."""
    client = EventStoreDBClient(emulator.uri)
    unanswered = []
    try:
        for name in emulator.store.stream_names():
            if name.startswith("$"):
                continue
            calls = {
                "forwards": lambda n=name: client.get_stream(n, timeout=PROBE_TIMEOUT),
                "backwards": lambda n=name: client.get_stream(
                    n, backwards=True, timeout=PROBE_TIMEOUT
                ),
                "metadata": lambda n=name: client.get_stream_metadata(n, timeout=PROBE_TIMEOUT),
            }
            for what, call in calls.items():
                try:
                    call()
                except DeadlineExceeded:
                    unanswered.append(f"{emulator.target} {name!r} {what}")
                except EventStoreDBClientException:
                    pass
    finally:
        client.close()
    return unanswered


def _one_run(env: dict[str, str], rng: random.Random) -> tuple[bool, str]:
    if rng.random() < 0.6:
        step = rng.choice(STEPS)
        occurrence = rng.randint(1, 6 if step in ("append", "written") else 2)
        delay = rng.choice((0.0, 0.0, rng.uniform(0.0, 0.05)))
        code = _run_child(env, [step, str(occurrence), f"{delay:.4f}"], timeout=RUN_TIMEOUT)
        return code == -signal.SIGKILL, "step" if code != 1 else "lease-lost"
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), "none", "0"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        proc.wait(timeout=rng.uniform(0.3, 3.0))
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=RUN_TIMEOUT)
    _expect_ok_or_killed(proc.returncode, stderr)
    return proc.returncode == -signal.SIGKILL, "timer" if proc.returncode != 1 else "lease-lost"


def _run_child(env: dict[str, str], args: list[str], *, timeout: float) -> int:
    proc = subprocess.run(
        [sys.executable, str(CHILD), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=timeout,
    )
    _expect_ok_or_killed(proc.returncode, proc.stderr)
    return proc.returncode


def _expect_ok_or_killed(code: int | None, stderr: bytes) -> None:
    # A run slowed past its 2 s lease (faults, a loaded machine) stops with LeaseLostError
    # before writing on: the designed outcome, and the next run resumes.
    if code == 1 and b"core.errors.LeaseLostError" in stderr:
        return
    if code not in (0, -signal.SIGKILL):
        raise AssertionError(f"relay child failed ({code}):\n{stderr.decode()[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mode", choices=("ordered", "partitioned"), default="ordered")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--odd-streams", type=int, default=0, help="streams named ünï.strm-…")
    parser.add_argument("--slice-events", type=int, default=300)
    parser.add_argument("--append-events", type=int, default=25)
    parser.add_argument("--no-multi-append", action="store_true")
    args = parser.parse_args()
    report = run_soak(
        args.kills,
        seed=args.seed,
        mode=args.mode,
        partitions=args.partitions,
        events=args.events,
        log=True,
        odd_streams=args.odd_streams,
        slice_events=args.slice_events,
        append_events=args.append_events,
        multi_append=not args.no_multi_append,
    )
    print(json.dumps(asdict(report), indent=2))
    clean = not (
        report.differences
        or report.duplicates
        or report.missing
        or report.out_of_order
        or report.checkpoint_regressions
        or report.unanswered_reads
    )
    sys.exit(0 if clean and report.kills else 1)


if __name__ == "__main__":
    main()

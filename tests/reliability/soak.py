"""Kill soak: a real relay process SIGKILLed at random points over many runs, each resumed,
with the source taking writes between runs; at the end the target equals the filtered source
by tests/oracle.py (every event once, in order, metadata exactly as written), and
`esdb-relay verify` (core.tools.verify) agrees with the oracle.

    python -m tests.reliability.soak --kills 200 --seed 1 [--mode partitioned --partitions 8]
        [--chain] [--no-multi-append] [--odd-streams 2 --slice-events 100 --append-events 20]
        [--target-version 26.1] [--shards 4]

`--target-version` starts the target emulator as that KurrentDB version (24.10: no v2 API;
25.1, the default: multi-stream append; 26.1: AppendRecords too, which ordered mode then uses).

Each run starts tests/crash/relay_child.py and kills it one of two ways (seeded): at a random
step boundary of the engine ("read", "append", "written", "commit", "committed"), after a
random delay (so an in-flight append is cut), or by the parent at a random wall-clock time
(anywhere: start-up, connecting, reading). Some runs also get UNAVAILABLE faults on the source
or the target. Bounded: stops after `kills` kills or `max_runs` runs, whichever comes first.

`--chain`: data migrated again. A generated history, with event metadata as real users have
it (tests/reliability/histories.py: `$original*` keys larger, smaller or equal to the real
place, `$schema.*` keys, padded and reordered JSON, scalars, non-JSON), is copied from A to B
by a first job; the killed job copies B to C while B takes more such writes between runs.

`--shards K`: the job is split into K shards (planned once, before the first run), run as K
relay processes at once, one per shard, each killed on its own (its own seeded choice of
step or time), while a writer thread appends to the source during the runs; the oracle then
checks per-stream order only (no order across shards is promised), and no shard's checkpoint
may move back.

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
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from esdbclient import EventStoreDBClient
from esdbclient.exceptions import DeadlineExceeded, EventStoreDBClientException

from core.checkpoint import CheckpointStore, open_store
from core.config import JobConfig
from core.eventstore import EventStore
from core.shard_plans import fix_plan
from core.tools.verify import verify
from esdb_emulator import Emulator
from esdb_emulator.store import ANY, JSON, ProposedEvent, Store
from esdb_emulator.workload import Workload, generate
from tests import oracle
from tests.engine.helpers import make_job, run_until_caught_up
from tests.reliability.helpers import CHILD, ROOT, child_env
from tests.reliability.histories import append_odd

STEPS = ("read", "append", "written", "commit", "committed")
EXCLUDE = "^cart-"
RUN_TIMEOUT = 120.0
PROBE_TIMEOUT = 5.0


@dataclass
class SoakReport:
    mode: str
    seed: int
    chain: bool = False
    multi_append: bool = True
    target_version: str | None = None  # the target emulator's (None: its default, 25.1)
    shards: int = 1
    kills_per_shard: list[int] = field(default_factory=list)
    concurrent_writes: int = 0  # source appends made while the shards' processes ran
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
    extra: int = 0
    out_of_order: bool = False
    verify_differences: int = 0
    verify_agrees: bool = False  # verify found differences exactly when the oracle did
    # Stream reads (forwards, backwards, metadata) on either emulator that did not answer
    # within PROBE_TIMEOUT: the wedged `ünï.strm-…` stream of issue 17.
    unanswered_reads: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        found = self.differences or self.duplicates or self.missing or self.extra
        stuck = self.out_of_order or self.checkpoint_regressions or self.unanswered_reads
        return not (found or stuck)


def write_more(store: Store, rng: random.Random, count: int, *, odd: bool = False) -> None:
    """Source writes between runs: new events on existing and new streams (with `odd`, their
    metadata of the shapes tests/reliability/histories.py lists)."""
    for _ in range(count):
        stream = f"{rng.choice(('order', 'cart', 'invoice'))}-live-{rng.randrange(30):03d}"
        if odd:
            append_odd(store, stream, rng)
            continue
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
    chain: bool = False,
    multi_append: bool = True,
    odd_streams: int = 0,
    slice_events: int = 300,
    append_events: int = 25,
    target_version: str | None = None,
    shards: int = 1,
    log: bool = False,
) -> SoakReport:
    rng = random.Random(f"soak-{seed}")  # not `seed`: generate() draws event ids from that
    report = SoakReport(
        mode=mode,
        seed=seed,
        chain=chain,
        multi_append=multi_append,
        target_version=target_version,
        shards=shards,
    )
    started = time.monotonic()
    max_runs = max_runs or kills * 3
    with (
        tempfile.TemporaryDirectory(prefix="esdb-soak-") as tmp,
        Emulator() as origin,
        Emulator() as source,
        Emulator(server_version=target_version) as target,
    ):
        if chain:
            _migrated_before(origin, source, Path(tmp), rng, seed, events)
        else:
            workload = Workload(events=events, streams=120, odd_streams=odd_streams, seed=seed)
            generate(source.store, workload)
        extra = {
            "ESDB_RELAY_BUDGET__MAX_EVENTS": str(slice_events),
            "ESDB_RELAY_BATCH__MAX_EVENTS": str(append_events),
            # A killed process holds the lease until it expires; keep that short.
            "ESDB_RELAY_LEASE_TTL_SECONDS": "2",
            "ESDB_RELAY_FILTERS__EXCLUDE_STREAMS": json.dumps([EXCLUDE]),
            "ESDB_RELAY_MODE": mode,
            "ESDB_RELAY_PARTITIONS": str(partitions),
            "ESDB_RELAY_MULTI_APPEND": json.dumps(multi_append),
            "ESDB_RELAY_SHARDS": str(shards),
        }
        store_url = f"sqlite:///{Path(tmp) / 'cp.db'}"
        env = child_env("soak", source, target, store_url, **extra)
        store = open_store(store_url)
        committed = -1
        if shards > 1:
            _sharded_runs(report, env, store, source, target, rng, kills, max_runs, log)
        while shards == 1 and report.kills < kills and report.runs < max_runs:
            report.runs += 1
            write_more(source.store, rng, rng.randrange(0, 60), odd=chain)
            for emulator in (source, target):
                emulator.faults.update(
                    unavailable_rate=rng.choice((0.0, 0.0, 0.02, 0.05)),
                    latency_ms=rng.choice((0.0, 0.0, 20.0)),
                    methods={"BatchAppend", "Append", "AppendSession", "AppendRecords"}
                    if emulator is target
                    else set(),
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
        # The last run: no kill, no fault, to completion (each shard's, one after another).
        for index in range(shards) if shards > 1 else [None]:
            _run_child(env, ["none", "0", *_shard_args(index)], timeout=RUN_TIMEOUT)
        report.faults_injected = report.kills + report.emulator_faults
        _check(report, source, target, mode, partitions, multi_append, shards)
        report.unanswered_reads = _unanswered_reads(source) + _unanswered_reads(target)
        store.close()
    report.seconds = round(time.monotonic() - started, 1)
    return report


def _migrated_before(
    origin: Emulator, source: Emulator, tmp: Path, rng: random.Random, seed: int, events: int
) -> None:
    """A history on `origin`, with odd metadata on a third of its events, copied to `source`
    by a first job (multi-stream appends on: metadata re-rendered with `$schema.*` keys)."""
    generate(origin.store, Workload(events=events * 2 // 3, streams=120, seed=seed))
    for _ in range(events // 3):
        name = f"{rng.choice(('order', 'invoice', 'cart'))}-{rng.randrange(200):06d}"
        append_odd(origin.store, name, rng)
    run_until_caught_up(
        make_job(origin, source, tmp, job_id="first-hop", budget={"max_events": 5000})
    )


def _check(
    report: SoakReport,
    source: Emulator,
    target: Emulator,
    mode: str,
    partitions: int,
    multi_append: bool,
    shards: int = 1,
) -> None:
    """The oracle's verdict, and whether verify agrees with it."""
    ordered = mode == "ordered" and partitions == 1 and shards == 1
    found = oracle.compare(
        source.store,
        target.store,
        oracle.Job(exclude_streams=(EXCLUDE,), multi_append=multi_append, ordered=ordered),
    )
    report.source_events = sum(1 for _ in source.store.iter_all())
    report.events_checked = found.events_checked
    report.differences = len(found.differences)
    report.duplicates = found.duplicates
    report.missing = found.missing
    report.extra = found.extra
    report.out_of_order = found.out_of_order
    job = JobConfig.load(
        payload={
            "job_id": "soak",
            "source": source.uri,
            "target": target.uri,
            "mode": mode,
            "partitions": partitions,
            "multi_append": multi_append,
            "shards": shards,
            "filters": {"exclude_streams": [EXCLUDE]},
        }
    )
    with EventStore(source.uri, side="source") as s, EventStore(target.uri, side="target") as t:
        checked = verify(job, s, t)
    report.verify_differences = checked.differences_total
    report.verify_agrees = (checked.differences_total == 0) == found.clean
    if not found.clean:
        print("oracle:", found.differences[:10], file=sys.stderr)
    if checked.differences_total:
        print("verify:", [d.model_dump() for d in checked.differences[:10]], file=sys.stderr)


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


def _sharded_runs(
    report: SoakReport,
    env: dict[str, str],
    store: CheckpointStore,
    source: Emulator,
    target: Emulator,
    rng: random.Random,
    kills: int,
    max_runs: int,
    log: bool,
) -> None:
    """Rounds of K relay processes at once, one per shard, each killed on its own, while a
    writer thread appends to the source; the plan is fixed before the first round."""
    shards = report.shards
    with EventStore(source.uri, side="source") as reader:
        plan = fix_plan(store, "soak", shards, reader, "soak")
    keys = [shard.key for shard in plan.shards("soak")]
    committed = dict.fromkeys(keys, -1)
    report.kills_per_shard = [0] * shards
    while report.kills < kills and report.runs < max_runs:
        report.runs += 1
        for emulator in (source, target):
            emulator.faults.update(
                unavailable_rate=rng.choice((0.0, 0.0, 0.02, 0.05)),
                latency_ms=rng.choice((0.0, 0.0, 20.0)),
                methods={"BatchAppend", "Append", "AppendSession", "AppendRecords"}
                if emulator is target
                else set(),
                seed=rng.randrange(2**31),
            )
        seeds = [rng.randrange(2**31) for _ in range(shards)]
        done = threading.Event()
        writer = threading.Thread(
            target=_write_while, args=(source.store, random.Random(rng.random()), done, report)
        )
        writer.start()
        try:
            with ThreadPoolExecutor(shards) as pool:
                runs = [
                    pool.submit(_one_run, env, random.Random(seed), i)
                    for i, seed in enumerate(seeds)
                ]
                outcomes = [run.result() for run in runs]
        finally:
            done.set()
            writer.join()
        for index, outcome in enumerate(outcomes):
            killed, how = outcome
            report.kills += killed
            report.kills_per_shard[index] += killed
            report.step_kills += killed and how == "step"
            report.timer_kills += killed and how == "timer"
            report.lease_lost_runs += how == "lease-lost"
            report.completed_runs += not killed
        for key in keys:
            checkpoint = store.load(key)
            position = checkpoint.position.commit if checkpoint and checkpoint.position else -1
            report.checkpoint_regressions += position < committed[key]
            committed[key] = max(committed[key], position)
        if log:
            print(f"round {report.runs}: {outcomes} kills so far {report.kills}", flush=True)


def _write_while(
    store: Store, rng: random.Random, done: threading.Event, report: SoakReport
) -> None:
    """The source's writes while the shards' processes run: a few events every ~50 ms."""
    while not done.wait(rng.uniform(0.01, 0.1)):
        count = rng.randrange(1, 4)
        write_more(store, rng, count)
        report.concurrent_writes += count


def _shard_args(index: int | None) -> list[str]:
    return [] if index is None else ["0", str(index)]


def _one_run(env: dict[str, str], rng: random.Random, shard: int | None = None) -> tuple[bool, str]:
    if rng.random() < 0.6:
        step = rng.choice(STEPS)
        occurrence = rng.randint(1, 6 if step in ("append", "written") else 2)
        delay = rng.choice((0.0, 0.0, rng.uniform(0.0, 0.05)))
        args = [step, str(occurrence), f"{delay:.4f}"]
        if shard is not None:
            args.append(str(shard))
        code = _run_child(env, args, timeout=RUN_TIMEOUT)
        return code == -signal.SIGKILL, "step" if code != 1 else "lease-lost"
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), "none", "0", *_shard_args(shard)],
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
    parser.add_argument("--chain", action="store_true", help="data migrated before (A->B->C)")
    parser.add_argument("--no-multi-append", dest="multi_append", action="store_false")
    parser.add_argument("--odd-streams", type=int, default=0, help="streams named ünï.strm-…")
    parser.add_argument("--slice-events", type=int, default=300)
    parser.add_argument("--append-events", type=int, default=25)
    parser.add_argument(
        "--target-version",
        choices=("24.10", "25.1", "26.1"),
        help="the KurrentDB version the target emulator behaves as (default 25.1)",
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=1,
        help="split the job into this many shards, run as that many processes killed apart",
    )
    args = parser.parse_args()
    report = run_soak(
        args.kills,
        seed=args.seed,
        mode=args.mode,
        partitions=args.partitions,
        events=args.events,
        chain=args.chain,
        multi_append=args.multi_append,
        odd_streams=args.odd_streams,
        slice_events=args.slice_events,
        append_events=args.append_events,
        target_version=args.target_version,
        shards=args.shards,
        log=True,
    )
    print(json.dumps(asdict(report), indent=2))
    sys.exit(0 if report.clean and report.verify_agrees and report.kills else 1)


if __name__ == "__main__":
    main()

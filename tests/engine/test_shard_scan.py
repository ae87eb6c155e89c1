"""A shard whose streams are absent from a long stretch of `$all` moves through it slice by
slice: its read is a filtered catch-up subscription (core/eventstore/scans.py) whose
checkpoints say how far the server scanned, committed once the records before them are
written (ChunkReader._scan, Slice.run). Before, the shard's one filtered read scanned on
until it found a slice's records or the end of `$all`, said nothing meanwhile, and a read cut
by its deadline left the shard where it was, every slice.

The stretch is made long in time rather than in records: the source emulator's filtered
scans are slowed (each record a filtered read or subscription considers costs
`SCAN_COST` seconds, as a large log on a real server would), since a log long enough to
outlast a slice's deadline at the emulator's speed would not fit a test. Everything else is
real: the emulator speaks gRPC to the relay, the checkpoint store is SQLite, the comparison is
tests/oracle.py's.

A *quiet* scan (no checkpoint within the stretch, whose scan outlasts the deadline) is closed
from another thread, or its slice stopped as SIGTERM stops it (the budget's `stop`): it ends
at once, not at the server's next checkpoint or the deadline."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import core.eventstore.scans as scans
from core.checkpoint import CheckpointStore, open_store
from core.config import JobConfig
from core.engine import Budget, SliceResult, run_slice
from core.engine.budget import Step
from core.eventstore import EventStore
from core.model import Event
from core.shards import Shard, ShardPlan, plan_shards
from esdb_emulator import Emulator
from esdb_emulator.store import ANY, JSON, ProposedEvent, Store
from esdb_emulator.streams import reads as emulator_reads
from tests import oracle
from tests.engine.test_shards import CHILD, ROOT, commit_plan, sharded_job

SCAN_COST = 0.0002  # seconds per record a filtered scan considers on the slowed source
# Slept once per SLEEP_EVERY records: one short sleep per record overshoots by up to a
# millisecond on a loaded machine, which would make a page (1,024 records) outlast a slice
# and the shard rescan the same page forever; a page costs ~0.2 s, a slice holds several.
SLEEP_EVERY = 64
SLICE_SECONDS = 0.8  # each slice's deadline, and the source's call timeout
OWN = 150  # records of the scanning shard's streams, before the stretch
STRETCH = 8000  # records of the other shard's streams after them


def event() -> ProposedEvent:
    return ProposedEvent(str(uuid.uuid4()), "Happened", JSON, b"{}", b"{}")


def history(store: Store) -> None:
    """Shard 0's streams (names ending in `q`) interleaved with shard 1's, then a long
    stretch of shard 1's streams only, then one more record of shard 0's."""
    for i in range(OWN):
        store.append(f"own-{i % 5}-q", ANY, [event()])
        store.append(f"other-{i % 7}", ANY, [event()])
    for i in range(STRETCH // 100):
        store.append(f"other-{i % 7}", ANY, [event() for _ in range(100)])


def slow_filtered_scans(
    monkeypatch: pytest.MonkeyPatch,
    cost: float = SCAN_COST,
    after: int = -1,
    fast_again: threading.Event | None = None,
) -> list[int]:
    """Each record past `after` a forward read or subscription of `$all` filtered by shard
    0's regex considers costs `cost` (until `fast_again` is set). Other filtered reads (the
    resume check's search for one stream's records, `^name$`) keep their speed: this test is
    about the shard's scan. Returns a counter: [records past `after` the slowed scans
    considered]."""
    init = emulator_reads._Filter.__init__
    matches = emulator_reads._Filter.matches
    regex = the_plan().regexes[0]
    considered = [0]

    def forwards(self: emulator_reads._Filter, options: Any) -> None:
        init(self, options)
        self.slow = (  # type: ignore[attr-defined]
            self.active
            and options.read_direction == options.Forwards
            and options.filter.stream_identifier.regex == regex
        )

    def slow(self: emulator_reads._Filter, record: Any) -> bool:
        if getattr(self, "slow", False) and record.position > after:
            considered[0] += 1
            self.considered = getattr(self, "considered", 0) + 1  # type: ignore[attr-defined]
            if self.considered % SLEEP_EVERY == 0:  # type: ignore[attr-defined]
                if fast_again is None:
                    time.sleep(cost * SLEEP_EVERY)
                else:
                    fast_again.wait(cost * SLEEP_EVERY)
        return matches(self, record)

    monkeypatch.setattr(emulator_reads._Filter, "__init__", forwards)
    monkeypatch.setattr(emulator_reads._Filter, "matches", slow)
    return considered


def the_plan() -> ShardPlan:
    plan = plan_shards({"x-q": 100, "x-1": 60, "x-2": 40}, 2, exact=False)
    assert plan.keys[0] == "q"
    return plan


def one_slice(
    job: JobConfig, store: CheckpointStore, shard: Shard, seconds: float, **kwargs: object
) -> SliceResult:
    with (
        EventStore(job.source.get_secret_value(), side="source", timeout=seconds) as s,
        EventStore(job.target.get_secret_value(), side="target") as t,
    ):
        budget = Budget(job.budget.max_events, job.budget.max_bytes, time.monotonic() + seconds)
        return run_slice(job, s, t, store, budget, shard=shard, **kwargs)  # type: ignore[arg-type]


def committed(store: CheckpointStore, shard: Shard) -> int | None:
    checkpoint = store.load(shard.key)
    return checkpoint.position.commit if checkpoint and checkpoint.position else None


def written_up_to(source: Store, target: Store, regex: str, position: int) -> None:
    """Every record of the shard's streams at or before `position` is on the target."""
    pattern = re.compile(regex)
    on_target = {r.event_id for r in target.iter_all()}
    missing = [
        r.position
        for r in source.iter_all()
        if r.position <= position and pattern.search(r.stream) and r.event_id not in on_target
    ]
    assert not missing, f"committed {position} past records never written: {missing[:5]}"


@pytest.mark.parametrize("mode", ["ordered", "partitioned"])
def test_a_shard_moves_through_a_long_stretch_of_other_shards_records(tmp_path, monkeypatch, mode):
    monkeypatch.setattr(scans, "SCAN_WINDOW", 50)  # a checkpoint every 50 records scanned
    with Emulator() as source, Emulator() as target:
        history(source.store)
        own_last = max(r.position for r in source.store.iter_all() if r.stream.endswith("-q"))
        partitions = 3 if mode == "partitioned" else 1
        job = sharded_job(
            source,
            target,
            tmp_path,
            2,
            budget={"max_events": 100},
            mode=mode,
            partitions=partitions,
        )
        plan = the_plan()
        commit_plan(job, plan)
        store = open_store(job.checkpoint_store)
        shard = plan.shard(job.job_id, 0)
        slow_filtered_scans(monkeypatch)
        positions: list[int] = []  # committed after each slice
        results: list[SliceResult] = []
        for _ in range(40):
            result = one_slice(job, store, shard, SLICE_SECONDS)
            assert result.status == "ok", result.error
            results.append(result)
            position = committed(store, shard)
            assert position is not None
            written_up_to(source.store, target.store, shard.regex, position)
            positions.append(position)
            if result.caught_up:
                break
        else:
            raise AssertionError(f"shard 0 did not catch up: {positions}")
        # Past its own records, each slice moved on through the stretch, and only the last
        # one said it was caught up; the stretch took more than one slice.
        past = [i for i, p in enumerate(positions) if p > own_last]
        assert past, positions
        scanning = positions[past[0] - 1 :]
        assert all(b > a for a, b in itertools.pairwise(scanning)), positions
        assert len(past) >= 2, positions
        assert not any(r.caught_up for r in results[:-1])
        assert all(r.next_action == "continue" for r in results[:-1])
        assert results[-1].next_action == "idle" and results[-1].lag_bytes == 0
        assert positions[-1] == source.store.last_position
        # The other shard, at full speed, then the whole copy compared.
        monkeypatch.undo()
        other = plan.shard(job.job_id, 1)
        for _ in range(200):
            if one_slice(job, store, other, 30.0).caught_up:
                break
        expected = oracle.Job(ordered=False, multi_append=True)
        report = oracle.compare(source.store, target.store, expected)
        assert report.clean, report


def test_a_backfill_range_ending_inside_the_stretch_never_commits_past_its_end(
    tmp_path, monkeypatch
):
    """`backfill --to B --shard I` with B inside the stretch: the shard's marks are clamped
    to B; a mark at or past B ends the range (caught up) at B exactly."""
    monkeypatch.setattr(scans, "SCAN_WINDOW", 50)
    with Emulator() as source, Emulator() as target:
        history(source.store)
        records = list(source.store.iter_all())
        own_last = max(r.position for r in records if r.stream.endswith("-q"))
        stretch = [r.position for r in records if r.position > own_last]
        stop_at = stretch[len(stretch) // 2]  # a record of the other shard, mid-stretch
        job = sharded_job(source, target, tmp_path, 2, budget={"max_events": 100})
        plan = the_plan()
        commit_plan(job, plan)
        store = open_store(job.checkpoint_store)
        shard = plan.shard(job.job_id, 0)
        slow_filtered_scans(monkeypatch)
        positions: list[int] = []
        for _ in range(40):
            result = one_slice(job, store, shard, SLICE_SECONDS, stop_at=stop_at)
            assert result.status == "ok", result.error
            position = committed(store, shard)
            assert position is not None and position <= stop_at, (position, stop_at)
            written_up_to(source.store, target.store, shard.regex, position)
            positions.append(position)
            if result.caught_up:
                break
        else:
            raise AssertionError(f"the range did not end: {positions}")
        assert positions[-1] == stop_at, positions
        assert len([p for p in positions if p > own_last]) >= 2, positions


@pytest.mark.parametrize(("step", "occurrence"), [("commit", 3), ("chunk", 3)])
def test_a_shard_killed_between_a_checkpoint_and_its_commit_loses_and_repeats_nothing(
    tmp_path, monkeypatch, step, occurrence
):
    """A real relay process for shard 0 (tests/crash/relay_child.py) SIGKILLed at a step
    boundary while it scans the stretch (slices of 0.8 s, a checkpoint every 1,024 records
    scanned: the default window), started again to the end; then shard 1; 0 differences."""
    with Emulator() as source, Emulator() as target:
        history(source.store)
        job = sharded_job(source, target, tmp_path, 2, budget={"max_events": 100})
        plan = the_plan()
        commit_plan(job, plan)
        slow_filtered_scans(monkeypatch)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ESDB_RELAY_JOB_ID": job.job_id,
            "ESDB_RELAY_SOURCE": source.uri,
            "ESDB_RELAY_TARGET": target.uri,
            "ESDB_RELAY_CHECKPOINT_STORE": job.checkpoint_store,
            "ESDB_RELAY_SHARDS": "2",
            "ESDB_RELAY_BUDGET__MAX_EVENTS": "100",
            "ESDB_RELAY_BUDGET__DEADLINE_SECONDS": str(SLICE_SECONDS),
            "ESDB_RELAY_BATCH__MAX_EVENTS": "20",
            "ESDB_RELAY_LEASE_TTL_SECONDS": "2",
        }

        def child(index: int, *args: str) -> int:
            proc = subprocess.run(
                [sys.executable, str(CHILD), *args, str(index)],
                env=env,
                cwd=ROOT,
                capture_output=True,
                timeout=180,
            )
            assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.decode()[-3000:]
            return proc.returncode

        store = open_store(job.checkpoint_store)
        shard = plan.shard(job.job_id, 0)
        assert child(0, step, str(occurrence), "0") == -signal.SIGKILL
        killed_at = committed(store, shard)
        time.sleep(2.1)  # the killed process's lease expires
        assert child(0, "none", "0", "0") == 0
        assert committed(store, shard) == source.store.last_position
        assert killed_at is None or killed_at < source.store.last_position  # killed mid-way
        monkeypatch.undo()
        assert child(1, "none", "0", "0") == 0
        expected = oracle.Job(ordered=False, multi_append=True)
        report = oracle.compare(source.store, target.store, expected)
        assert report.clean, report


def test_the_scan_ends_quietly_at_its_deadline_and_retries_the_servers_own_deadline():
    """EventStore.scan_all_after: a scan that finds nothing (the log's end reached, or the
    server sending nothing) ends at the caller's deadline without an error (the call's own
    timeout); a DEADLINE_EXCEEDED the server answers before that is an error, retried."""
    with Emulator() as source:
        for i in range(300):
            source.store.append(f"other-{i % 7}", ANY, [event()])
        head = source.store.last_position
        with EventStore(source.uri, side="source") as s:
            # From the head: nothing to scan; caught_up once, then nothing until the deadline.
            items = list(s.scan_all_after(head, "-q$", time.monotonic() + 0.3))
            assert all(isinstance(i, scans.Scanned) for i in items), items
            assert [i for i in items if i.caught_up] == [items[-1]]
            # The server's own DEADLINE_EXCEEDED on the first call: retried, then the scan.
            source.faults.update(deadline_next=1, methods={"Read"})
            items = list(s.scan_all_after(None, "-q$", time.monotonic() + 2.0))
            assert source.faults.injected.get("deadline") == 1
            assert s.retries == 1
            marks = [i for i in items if isinstance(i, scans.Scanned)]
            assert marks[-1].caught_up and not any(isinstance(i, Event) for i in items)


# A quiet stretch: the server scans it in pages of 50 records (and looks, between pages,
# whether the call was cancelled) but sends no checkpoint before its end, and scanning it takes
# longer than the scan's deadline (8,000 records at 10 ms: 80 s). A relay in its own process
# scans with the default window, a checkpoint every 1,024 records: 100 ms each there (102 s).
QUIET_COST = 0.01
QUIET_PROCESS_COST = 0.1
QUIET_DEADLINE = 60.0  # the scan's (the slice's) deadline: a scan not closed would run to it
PROMPT = 10.0  # how long a closed scan may take to end: far below the deadline


@pytest.fixture
def fast_again() -> Iterator[threading.Event]:
    """Set at the end of a test: the server's scans, slowed, then end at full speed (a
    cancelled one is noticed only between pages)."""
    event = threading.Event()
    yield event
    event.set()


def quiet_stretch(
    monkeypatch: pytest.MonkeyPatch,
    source: Store,
    fast_again: threading.Event,
    cost: float = QUIET_COST,
) -> tuple[int, list[int]]:
    """The history, its stretch slowed and without checkpoints for shard 0's scan (in this
    process); (the last record of shard 0's streams, the slowed-records counter)."""
    monkeypatch.setattr(scans, "SCAN_WINDOW", 50)
    monkeypatch.setattr(scans, "SCAN_CHECKPOINT_PAGES", 100_000)
    history(source)
    own_last = max(r.position for r in source.iter_all() if r.stream.endswith("-q"))
    return own_last, slow_filtered_scans(monkeypatch, cost, own_last, fast_again)


def into_the_stretch(considered: list[int], records: int = 2 * SLEEP_EVERY) -> None:
    """Wait until the server is scanning the quiet stretch for shard 0 (`records` of it)."""
    for _ in range(600):
        if considered[0] >= records:
            return
        time.sleep(0.05)
    raise AssertionError("the scan never reached the stretch")


def test_a_quiet_scan_closed_from_another_thread_ends_at_once(monkeypatch, fast_again):
    """EventStore.scan_all_after's `close()`, from another thread than the one waiting in the
    scan, cancels the call in flight: the waiting thread's iteration ends quietly (no error,
    no retry), long before the server's next checkpoint or the deadline."""
    with Emulator() as source:
        own_last, considered = quiet_stretch(monkeypatch, source.store, fast_again)
        with EventStore(source.uri, side="source") as s:
            scan = s.scan_all_after(None, the_plan().regexes[0], time.monotonic() + QUIET_DEADLINE)
            items: list[object] = []
            errors: list[BaseException] = []

            def consume() -> None:
                try:
                    items.extend(scan)
                except BaseException as e:
                    errors.append(e)

            thread = threading.Thread(target=consume, daemon=True)
            thread.start()
            into_the_stretch(considered)
            scan.close()
            thread.join(PROMPT)
            fast_again.set()
            assert not thread.is_alive(), "the closed scan waited for a checkpoint or its deadline"
            assert not errors, errors
            assert s.retries == 0
            # It was closed in the stretch: every record of shard 0's streams read, no mark.
            assert [i.commit_position for i in items if isinstance(i, Event)][-1] == own_last
            assert not any(isinstance(i, scans.Scanned) for i in items), items


@pytest.mark.parametrize("mode", ["ordered", "partitioned"])
def test_a_stop_ends_a_shard_slice_waiting_on_a_quiet_scan(tmp_path, monkeypatch, fast_again, mode):
    """SIGTERM and Ctrl-C set the budget's `stop` (handlers/cli/common.py's stop_on_signals):
    a shard's slice whose writers wait on a quiet scan ends at once, committing only what is
    written (its writes up to the stop), not at the server's next checkpoint or the
    deadline."""
    with Emulator() as source, Emulator() as target:
        own_last, considered = quiet_stretch(monkeypatch, source.store, fast_again)
        job = sharded_job(
            source,
            target,
            tmp_path,
            2,
            budget={"max_events": 10_000},
            mode=mode,
            partitions=3 if mode == "partitioned" else 1,
        )
        plan = the_plan()
        commit_plan(job, plan)
        store = open_store(job.checkpoint_store)
        shard = plan.shard(job.job_id, 0)
        stop = threading.Event()
        thread, outcome = slice_in_a_thread(job, source, target, store, shard, stop=stop)
        into_the_stretch(considered)
        held = OWN % 20  # the last chunk's records: in the reader, waiting for more or a mark
        if mode == "ordered":  # written as read, in chunks of 20 (the job's batch)
            for _ in range(600):
                if own_records(target.store) == OWN - held:
                    break
                time.sleep(0.05)
        stop.set()
        thread.join(PROMPT)
        fast_again.set()
        assert not thread.is_alive(), "the stopped slice waited for a checkpoint or its deadline"
        (result,) = outcome
        assert isinstance(result, SliceResult), result
        assert result.status == "ok", result.error
        assert not result.caught_up and result.next_action == "continue"
        position = committed(store, shard)
        if position is not None:
            written_up_to(source.store, target.store, shard.regex, position)
        if mode == "ordered":  # the held chunk came after the stop: not written
            assert own_records(target.store) == OWN - held
            assert position is not None and position < own_last
        else:  # partitioned writers write once the read is over: after the stop, nothing
            assert position is None and own_records(target.store) == 0


def slice_in_a_thread(
    job: JobConfig,
    source: Emulator,
    target: Emulator,
    store: CheckpointStore,
    shard: Shard,
    *,
    stop: threading.Event | None = None,
    on_step: Callable[[Step], None] = lambda step: None,
) -> tuple[threading.Thread, list[SliceResult | BaseException]]:
    """One slice of `shard` on a thread of its own, with the quiet stretch's deadline; its
    result (or the exception it raised) lands in the list."""
    outcome: list[SliceResult | BaseException] = []

    def run() -> None:
        try:
            with (
                EventStore(source.uri, side="source", timeout=QUIET_DEADLINE) as s,
                EventStore(target.uri, side="target") as t,
            ):
                deadline = time.monotonic() + QUIET_DEADLINE
                budget = Budget(job.budget.max_events, job.budget.max_bytes, deadline, stop)
                outcome.append(run_slice(job, s, t, store, budget, shard=shard, on_step=on_step))
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def own_records(store: Store) -> int:
    return sum(1 for r in store.iter_all() if r.stream.endswith("-q"))


def test_a_slice_failing_while_its_scan_is_quiet_ends_at_once(tmp_path, monkeypatch, fast_again):
    """A slice that stops on an error while its reader waits on a quiet scan closes the
    reader (ChunkReader.close, from the writer's thread), which cancels the scan: the error
    reaches the caller at once, not at the server's next checkpoint or the deadline."""
    with Emulator() as source, Emulator() as target:
        _, considered = quiet_stretch(monkeypatch, source.store, fast_again)
        job = sharded_job(source, target, tmp_path, 2, budget={"max_events": 10_000})
        plan = the_plan()
        commit_plan(job, plan)
        store = open_store(job.checkpoint_store)
        shard = plan.shard(job.job_id, 0)
        written = [0]

        def on_step(step: Step) -> None:
            if step == Step.WRITTEN:
                written[0] += 1
                if written[0] == OWN // 20:  # the last full chunk: then the scan is quiet
                    into_the_stretch(considered)
                    raise RuntimeError("a writer's failure")

        thread, outcome = slice_in_a_thread(job, source, target, store, shard, on_step=on_step)
        for _ in range(600):
            if written[0] >= OWN // 20:
                break
            time.sleep(0.05)
        thread.join(PROMPT)
        fast_again.set()
        assert not thread.is_alive(), "the failed slice waited for a checkpoint or its deadline"
        (error,) = outcome
        assert isinstance(error, RuntimeError) and str(error) == "a writer's failure", error


def test_sigterm_stops_a_shard_process_waiting_on_a_quiet_scan(tmp_path, monkeypatch, fast_again):
    """`esdb-relay run --shard 0` in a real process (its scan's default window: a checkpoint
    every 1,024 records, 102 s apart here), its slice's deadline 60 s, SIGTERMed while its
    scan is quiet: it exits 143 at once with what it wrote committed, not at the deadline."""
    with Emulator() as source, Emulator() as target:
        _, considered = quiet_stretch(monkeypatch, source.store, fast_again, QUIET_PROCESS_COST)
        job = sharded_job(source, target, tmp_path, 2, budget={"max_events": 10_000})
        plan = the_plan()
        commit_plan(job, plan)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ESDB_RELAY_JOB_ID": job.job_id,
            "ESDB_RELAY_SOURCE": source.uri,
            "ESDB_RELAY_TARGET": target.uri,
            "ESDB_RELAY_CHECKPOINT_STORE": job.checkpoint_store,
            "ESDB_RELAY_SHARDS": "2",
            "ESDB_RELAY_BUDGET__MAX_EVENTS": "10000",
            "ESDB_RELAY_BUDGET__DEADLINE_SECONDS": str(QUIET_DEADLINE),
            "ESDB_RELAY_BATCH__MAX_EVENTS": "20",
            "COLUMNS": "300",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "handlers.cli.main", "run", "--shard", "0",
             "--until-caught-up", "--no-progress", "--log-format", "json"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            into_the_stretch(considered, SLEEP_EVERY)
            assert proc.poll() is None, proc.communicate()
            proc.send_signal(signal.SIGTERM)
            out, errs = proc.communicate(timeout=PROMPT)  # not the slice's 60 s deadline
        finally:
            fast_again.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 143, out + errs
        assert "Traceback" not in errs
        store = open_store(job.checkpoint_store)
        shard = plan.shard(job.job_id, 0)
        position = committed(store, shard)
        if position is not None:
            written_up_to(source.store, target.store, shard.regex, position)
        store.release(store.acquire(shard.key, "the-next-run", 60))  # the lease is free

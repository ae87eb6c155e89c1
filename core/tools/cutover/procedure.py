"""The cutover procedure: caught up, writers stopped, verify, subscriptions, the report."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Literal

from core.checkpoint import CheckpointStore, open_store
from core.config import JobConfig
from core.errors import RelayError
from core.eventstore import EventStore
from core.model import Event
from core.progress import copied, measure
from core.relay import Relay
from core.shard_plans import stored_plan
from core.shards import Shard
from core.tools.cutover.report import (
    EXIT_ABORTED,
    EXIT_CHECK_FAILED,
    EXIT_COMPLETED,
    EXIT_ERROR,
    EXIT_NOT_CAUGHT_UP,
    STREAMS_SHOWN,
    CutoverOptions,
    CutoverReport,
    CutoverShard,
    Lag,
    Outcome,
    QuietWatch,
    ShardLag,
    StepRecord,
    position_text,
    read_translated,
    write_reports,
)
from core.tools.subscriptions import apply_plan, plan_subscriptions
from core.tools.translate import translate_file
from core.tools.verify import public_endpoint, verify

PAGE = 1000


class CutoverObserver:
    """What the procedure tells its user; the CLI renders it. Defaults do nothing."""

    def step(self, name: str, title: str) -> None: ...

    def step_done(self, record: StepRecord) -> None: ...

    def lag(self, lag: Lag, waited: float, timeout: float) -> None: ...

    def confirm_writers_stopped(self) -> bool:
        """Ask the operator to stop every writer of the source; False aborts the cutover."""
        return True

    def cannot_confirm(self) -> str | None:
        """Why the operator cannot be asked at all (no terminal, no --yes), checked before the
        first step so the cutover refuses at once (exit 4, report written); None = can ask."""
        return None

    def quiet(self, watch: QuietWatch, timeout: float) -> None: ...

    def copying(self, lag: Lag, waited: float, timeout: float) -> None: ...

    def verify_progress(self, done: int, total: int) -> None: ...


class CutoverStop(Exception):
    """Ends the procedure with an outcome; the report is written all the same."""

    def __init__(self, outcome: Outcome, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.exit_code = exit_code
        self.message = message


# ------------------------------------------------------------------------ pure steps
def _user_stream(event: Event) -> str:
    return event.stream[2:] if event.stream.startswith("$$") else event.stream


def scan_after(
    job: JobConfig, source: EventStore, position: int | None, cap: int | None = None
) -> tuple[list[Event], int | None, bool]:
    """The replicable records of `$all` after `position` (None = the start), the position of
    the last record read (any kind), and whether `cap` records were read before the end."""
    found: list[Event] = []
    read = 0
    while True:
        n = 0
        for event in source.read_all_after(position, PAGE):
            n += 1
            position = event.commit_position
            if copied(job, event):
                found.append(event)
        read += n
        if n < PAGE:
            return found, position, False
        if cap is not None and read >= cap:
            return found, position, True


def measure_lag(job: JobConfig, store: CheckpointStore, source: EventStore) -> Lag:
    """What is left to copy, as `status` counts it (core/progress.py's `measure`)."""
    progress = measure(job, source, store)
    return Lag(
        checkpoint_position=progress.position,
        head_position=progress.head_position or 0,
        lag_bytes=progress.lag_bytes or 0,
        pending_events=progress.lag_events_counted,
        pending_capped=not progress.lag_events_exact,
        shards=[
            ShardLag(
                index=s.index,
                checkpoint_position=s.position,
                pending_events=s.lag_events,
                caught_up=s.caught_up,
            )
            for s in progress.shards
        ],
    )


def shard_checkpoints(store: CheckpointStore, job_id: str) -> list[CutoverShard] | None:
    """A sharded job's shards as their records stand (None: the job is one chain)."""
    plan = stored_plan(store, job_id)
    if plan is None:
        return None
    shards = []
    for shard in plan.shards(job_id):
        cp = store.load(shard.key)
        shards.append(
            CutoverShard(
                index=shard.index,
                key=shard.key,
                checkpoint_position=cp.position.commit if cp and cp.position else None,
                events_written=cp.events_written if cp else 0,
                events_read=cp.events_read if cp else 0,
            )
        )
    return shards


def _written(store: CheckpointStore, job_id: str) -> int:
    shards = shard_checkpoints(store, job_id)
    if shards is not None:
        return sum(s.events_written for s in shards)
    checkpoint = store.load(job_id)
    return checkpoint.events_written if checkpoint else 0


# ------------------------------------------------------------------------ the procedure
class _RelayThread:
    """The relay's slices, back to back, in a thread (with `run_relay`); a sharded job's in one
    thread per shard (each its own chain, as `esdb-relay run --shard I` runs it)."""

    def __init__(self, job: JobConfig, idle_seconds: float) -> None:
        self.job = job
        self.idle_seconds = idle_seconds
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.threads: list[threading.Thread] = []

    def _run(self, shard: Shard | None) -> None:
        try:
            with Relay(self.job) as relay:
                relay.run(
                    until_caught_up=False,
                    stop=self.stop,
                    idle_seconds=self.idle_seconds,
                    **({"shard": shard} if shard is not None else {}),
                )
        except BaseException as e:  # reported by the step that waits for the relay
            self.error = e

    def __enter__(self) -> _RelayThread:
        shards: list[Shard | None] = [None]
        if self.job.shards > 1:
            with Relay(self.job) as relay:
                plan = relay.shard_plan()
            assert plan is not None
            shards = list(plan.shards(self.job.job_id))
        for shard in shards:
            name = "cutover-relay" if shard is None else f"cutover-relay-{shard.index}"
            thread = threading.Thread(target=self._run, args=(shard,), name=name, daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


class Cutover:
    def __init__(
        self,
        job: JobConfig,
        options: CutoverOptions,
        *,
        observer: CutoverObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job = job
        self.options = options
        self.observer = observer or CutoverObserver()
        self.clock = clock
        # Set (by a signal handler, or another thread) to stop at the next check: waits and
        # verify's streams end cleanly, never in the middle of a gRPC call.
        self.abort = threading.Event()
        self.relay: _RelayThread | None = None
        self.report = CutoverReport(
            job_id=job.job_id,
            started_at=datetime.now(UTC),
            source=public_endpoint(job.source.get_secret_value()),
            target=public_endpoint(job.target.get_secret_value()),
            options=options.model_dump(mode="json"),
        )

    def run(self) -> CutoverReport:
        """The whole procedure; the report says how it ended and is written to report_dir."""
        report = self.report
        try:
            self._run()
        except CutoverStop as stop:
            report.outcome, report.exit_code, report.message = (
                stop.outcome,
                stop.exit_code,
                stop.message,
            )
        except RelayError as e:
            report.outcome, report.exit_code, report.message = "error", EXIT_ERROR, str(e)
        except KeyboardInterrupt:
            report.outcome, report.exit_code = "aborted", EXIT_ABORTED
            report.message = "interrupted by the operator"
        report.finished_at = datetime.now(UTC)
        report.next_steps = self._next_steps()
        write_reports(report, self.options.report_dir)
        return report

    def _run(self) -> None:
        options = self.options
        why = self.observer.cannot_confirm()
        if why is not None:
            raise CutoverStop("aborted", EXIT_ABORTED, why)
        store = open_store(self.job.checkpoint_store)
        try:
            with (
                EventStore(self.job.source.get_secret_value(), side="source") as source,
                EventStore(self.job.target.get_secret_value(), side="target") as target,
            ):
                self.source, self.target, self.store = source, target, store
                written_before = _written(store, self.job.job_id)
                relay = (
                    _RelayThread(self.job, options.poll_seconds)
                    if options.run_relay
                    else nullcontext()
                )
                with relay as self.relay:  # our relay runs until the final copy is done
                    self._step("caught-up", "confirm the relay is caught up", self._caught_up)
                    self._step("writers", "stop the writers, watch for quiet", self._quiet)
                    self._step("final-copy", "wait for the final events", self._final_copy)
                self.relay = None
                self._positions(written_before)
                self._step("verify", "verify the target against the source", self._verify)
                self._step("subscriptions", "translate subscription checkpoints", self._subs)
        finally:
            store.close()
        if self.report.catch_up_errors:
            raise CutoverStop(
                "failed",
                EXIT_CHECK_FAILED,
                f"{self.report.catch_up_errors} catch-up checkpoint(s) could not be translated "
                f"(see {self.report.catch_up_file}); everything else is done",
            )
        self.report.outcome, self.report.exit_code = "completed", EXIT_COMPLETED
        self.report.message = (
            f"the target holds the source's events; point clients at {self.report.target}"
        )

    def _step(self, name: str, title: str, action: Callable[[], str]) -> None:
        self.observer.step(name, title)
        started = datetime.now(UTC)
        try:
            detail = action()
        except CutoverStop as stop:
            self._record(name, "failed", started, stop.message)
            raise
        except RelayError as e:
            self._record(name, "failed", started, str(e))
            raise
        self._record(name, "ok", started, detail)

    def _record(
        self, name: str, status: Literal["ok", "failed"], started: datetime, detail: str
    ) -> None:
        record = StepRecord(
            name=name,
            status=status,
            started_at=started,
            finished_at=datetime.now(UTC),
            detail=detail,
        )
        self.report.steps.append(record)
        self.observer.step_done(record)

    def _sleep(self, seconds: float) -> None:
        self.abort.wait(max(0.0, seconds))
        self._check_abort()

    def _check_abort(self) -> None:
        if self.abort.is_set():
            raise CutoverStop("aborted", EXIT_ABORTED, "interrupted by the operator")

    def _verify_progress(self, done: int, total: int) -> None:
        self._check_abort()
        self.observer.verify_progress(done, total)

    def _check_relay(self) -> None:
        self._check_abort()
        if self.relay is not None and self.relay.error is not None:
            raise CutoverStop(
                "failed",
                EXIT_ERROR,
                f"the relay run by the cutover stopped: {self.relay.error}",
            )

    # ---------------------------------------------------------------------- 1 caught up
    def _caught_up(self) -> str:
        """Lag 0 now; or, with `wait`, lag 0 or a relay that keeps up with live writers: its
        checkpoint reached the source head seen one poll earlier (the writers are still on,
        so an exact 0 may never be seen; step 3 waits for it once they are off)."""
        options = self.options
        lag = measure_lag(self.job, self.store, self.source)
        self.report.lag_at_start = lag
        began = self.clock()
        previous_head: int | None = None
        while not lag.caught_up:
            self._check_relay()
            if not options.wait:
                raise CutoverStop(
                    "refused",
                    EXIT_NOT_CAUGHT_UP,
                    f"the relay is not caught up: {lag.describe()}. Let it catch up (esdb-relay "
                    "status shows the ETA) and run cutover again, or pass --wait",
                )
            reached = lag.checkpoint_position is not None and previous_head is not None
            if reached and lag.checkpoint_position >= previous_head:  # type: ignore[operator]
                self.observer.lag(lag, self.clock() - began, options.lag_timeout)
                return (
                    f"the relay keeps up with the writers: checkpoint "
                    f"{position_text(lag.checkpoint_position)} passed the head of one poll before; "
                    f"{lag.describe()} at this moment"
                )
            waited = self.clock() - began
            if waited >= options.lag_timeout:
                raise CutoverStop(
                    "timed_out",
                    EXIT_NOT_CAUGHT_UP,
                    f"the relay did not catch up within {options.lag_timeout:g}s: "
                    f"{lag.describe()}. Is it running (the deployed schedule, or --run-relay)?",
                )
            self.observer.lag(lag, waited, options.lag_timeout)
            previous_head = lag.head_position
            self._sleep(options.poll_seconds)
            lag = measure_lag(self.job, self.store, self.source)
        self.observer.lag(lag, self.clock() - began, options.lag_timeout)
        return (
            f"lag 0: checkpoint {position_text(lag.checkpoint_position)}, "
            f"source head {position_text(lag.head_position)}"
        )

    # ---------------------------------------------------------------------- 2 writers
    def _quiet(self) -> str:
        if not self.observer.confirm_writers_stopped():
            raise CutoverStop(
                "aborted", EXIT_ABORTED, "the operator did not confirm the writers are stopped"
            )
        options = self.options
        position = self.source.head_position()
        watch = QuietWatch(
            quiet_seconds=options.quiet_seconds,
            start_position=position,
            final_position=position,
        )
        self.report.quiet = watch
        began = last_write = self.clock()
        quiet_poll = False
        while True:
            self._check_relay()
            writes, last, _ = scan_after(self.job, self.source, watch.final_position)
            now = self.clock()
            watch.final_position = last if last is not None else watch.final_position
            if writes:
                watch.writes_seen += len(writes)
                watch.writes_resumed += quiet_poll
                watch.last_write_position = writes[-1].commit_position
                for event in writes[-STREAMS_SHOWN:]:
                    name = _user_stream(event)
                    if name in watch.recent_streams:
                        watch.recent_streams.remove(name)
                    watch.recent_streams.append(name)
                del watch.recent_streams[:-STREAMS_SHOWN]
                last_write = now
            quiet_poll = not writes
            watch.quiet_for = now - last_write
            watch.waited_seconds = now - began
            self.observer.quiet(watch, options.quiet_timeout)
            if watch.quiet_for >= options.quiet_seconds:
                break
            if watch.waited_seconds >= options.quiet_timeout:
                raise CutoverStop(
                    "timed_out",
                    EXIT_NOT_CAUGHT_UP,
                    f"writes kept arriving for {options.quiet_timeout:g}s: {watch.writes_seen:,} "
                    f"event(s) since the writers were to stop, lately in "
                    f"{', '.join(watch.recent_streams)}. Stop every writer and run cutover again",
                )
            self._sleep(min(options.poll_seconds, options.quiet_seconds - watch.quiet_for))
        resumed = f", writes resumed {watch.writes_resumed} time(s)" if watch.writes_resumed else ""
        return (
            f"no writes for {watch.quiet_for:.1f}s; {watch.writes_seen:,} event(s) arrived "
            f"during the watch{resumed}; source $all at {position_text(watch.final_position)}"
        )

    # ---------------------------------------------------------------------- 3 final copy
    def _final_copy(self) -> str:
        options = self.options
        began = self.clock()
        while True:
            self._check_relay()
            lag = measure_lag(self.job, self.store, self.source)
            waited = self.clock() - began
            self.observer.copying(lag, waited, options.copy_timeout)
            if lag.caught_up:
                return f"checkpoint {position_text(lag.checkpoint_position)}: nothing left to copy"
            if waited >= options.copy_timeout:
                where = "" if options.run_relay else " Is the relay's schedule running?"
                raise CutoverStop(
                    "timed_out",
                    EXIT_NOT_CAUGHT_UP,
                    f"the final events were not copied within {options.copy_timeout:g}s: "
                    f"{lag.describe()}.{where} Or pass --run-relay",
                )
            self._sleep(options.poll_seconds)

    def _positions(self, written_before: int) -> None:
        report = self.report
        shards = shard_checkpoints(self.store, self.job.job_id)
        if shards is not None:
            report.shards = shards
            positions = [s.checkpoint_position for s in shards if s.checkpoint_position is not None]
            report.checkpoint_position = min(positions) if len(positions) == len(shards) else None
            report.events_written_total = sum(s.events_written for s in shards)
            report.events_read_total = sum(s.events_read for s in shards)
        else:
            checkpoint = self.store.load(self.job.job_id)
            report.checkpoint_position = (
                checkpoint.position.commit if checkpoint and checkpoint.position else None
            )
            report.events_written_total = checkpoint.events_written if checkpoint else 0
            report.events_read_total = checkpoint.events_read if checkpoint else 0
        report.events_copied_during_cutover = report.events_written_total - written_before
        report.source_head = self.source.head_position()
        report.target_head = self.target.head_position()

    # ---------------------------------------------------------------------- 4 verify
    def _verify(self) -> str:
        options = self.options
        result = verify(
            self.job,
            self.source,
            self.target,
            sample=options.sample,
            seed=options.seed,
            progress=self._verify_progress,
            workers=options.verify_workers,
            plan=stored_plan(self.store, self.job.job_id),
        )
        self.report.verify = result
        scope = (
            f"a sample of {result.streams_checked:,} of {result.streams_in_source:,} streams"
            if options.sample
            else f"all {result.streams_checked:,} streams"
        )
        if not result.ok:
            raise CutoverStop(
                "failed",
                EXIT_CHECK_FAILED,
                f"verify found {result.differences_total:,} difference(s) in "
                f"{result.streams_differing + result.extra_streams:,} stream(s) ({scope}); "
                "see the report. Do not move the clients; fix the cause and run cutover again",
            )
        assert self.report.quiet is not None
        late, _, _ = scan_after(self.job, self.source, self.report.quiet.final_position)
        self.report.writes_after_quiet = len(late)
        if late:
            streams = sorted({_user_stream(e) for e in late})[:STREAMS_SHOWN]
            raise CutoverStop(
                "failed",
                EXIT_CHECK_FAILED,
                f"{len(late):,} event(s) reached the source after the quiet period (in "
                f"{', '.join(streams)}): a writer is still running. Stop it and run cutover "
                "again",
            )
        return (
            f"{scope} equal, {result.events_compared:,} events compared; no writes since the "
            "quiet period"
        )

    # ---------------------------------------------------------------------- 5 subscriptions
    def _subs(self) -> str:
        options = self.options
        report = self.report
        plans = plan_subscriptions(self.job, self.source, self.target)
        if options.apply_subscriptions:
            apply_plan(self.target, plans)
            report.persistent_subscriptions_applied = True
        report.persistent_subscriptions = plans
        parts = [f"{len(plans)} persistent subscription(s)"]
        if options.checkpoints_file is not None:
            src = options.checkpoints_file
            options.report_dir.mkdir(parents=True, exist_ok=True)
            stamp = report.started_at.strftime("%Y%m%dT%H%M%SZ")
            out = options.report_dir / f"catch-up-checkpoints-{stamp}{src.suffix or '.jsonl'}"
            rows, errors = translate_file(self.job, self.source, self.target, src, out)
            report.catch_up_file = str(out)
            report.catch_up_errors = errors
            report.catch_up_checkpoints = read_translated(out)
            parts.append(f"{rows} catch-up checkpoint(s) translated, {errors} error(s)")
        return "; ".join(parts)

    # ---------------------------------------------------------------------- next steps
    def _next_steps(self) -> list[str]:
        report = self.report
        keep = "keep the clients on the source"
        if report.outcome != "completed":
            if report.catch_up_errors and report.verify is not None and report.verify.ok:
                return [
                    f"{keep} until the cutover completes",
                    f"fix the {report.catch_up_errors} catch-up checkpoint(s) marked with an "
                    f"error in {report.catch_up_file} (the others are translated there)",
                    "run cutover again: every step is safe to repeat",
                ]
            if report.verify is not None and (not report.verify.ok or report.writes_after_quiet):
                return [f"{keep}: the target is not proven equal", "fix the cause, run again"]
            return [f"{keep}; fix what the message says and run cutover again"]
        steps = [
            f"point every writer and reader at the target, {report.target}",
            "disable the relay's schedule: there is nothing left to copy",
        ]
        todo = [p for p in report.persistent_subscriptions if p.action in ("create", "update")]
        if todo and not report.persistent_subscriptions_applied:
            steps.append(
                f"re-create the {len(todo)} persistent subscription(s) to create or update on "
                "the target: esdb-relay migrate-subscriptions --apply (the starts are in this "
                "report)"
            )
        manual = [p for p in report.persistent_subscriptions if p.action in ("manual", "error")]
        if manual:
            steps.append(
                f"look at the {len(manual)} persistent subscription(s) marked manual or error "
                "in this report: they are not created by --apply"
            )
        if report.catch_up_file:
            steps.append(
                f"resume each catch-up subscription from its target checkpoint in "
                f"{report.catch_up_file}"
            )
        steps.append(
            "a catch-up subscription that had processed everything on the source resumes "
            f"after target position {position_text(report.target_head)}"
        )
        return steps


# ------------------------------------------------------------------------ markdown

"""`cutover` (core.tools.cutover) against two emulators: refuses while lag > 0, completes once the
writers stop (quiet period detected, final events copied, verify passes, report written),
notices writes that resume during the quiet watch or after it, fails on a tampered target."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from esdbclient import EventStoreDBClient, NewEvent, StreamState

from core.config import JobConfig
from core.eventstore import EventStore
from core.tools.cutover import (
    EXIT_ABORTED,
    EXIT_CHECK_FAILED,
    EXIT_COMPLETED,
    EXIT_NOT_CAUGHT_UP,
    Cutover,
    CutoverObserver,
    CutoverOptions,
    CutoverReport,
    QuietWatch,
)
from core.tools.cutover.report import not_started, write_reports
from core.tools.translate import translate_position, translate_stream
from esdb_emulator import Emulator
from esdb_emulator.store import ANY, ProposedEvent
from tests.engine.helpers import make_job, run_until_caught_up, user_event_count

FAST = {"poll_seconds": 0.05, "quiet_seconds": 0.3, "lag_timeout": 30, "copy_timeout": 30}


def event(n: int) -> NewEvent:
    return NewEvent(type="Placed", data=json.dumps({"n": n}).encode(), id=uuid.uuid4())


def history(client: EventStoreDBClient, streams: int = 6, per_stream: int = 5) -> None:
    for s in range(streams):
        for n in range(per_stream):
            client.append_to_stream(
                f"order-{s}", current_version=StreamState.ANY, events=[event(n)]
            )
    client.append_to_stream("$internal", current_version=StreamState.ANY, events=[event(0)])
    client.set_stream_metadata("order-1", metadata={"owner": "sales"})
    client.delete_stream("order-2", current_version=StreamState.ANY)


def head(db: Emulator) -> int:
    """Commit position of the last record of the emulator's `$all`."""
    with EventStore(db.uri, side="db") as store:
        return store.head_position()


def cutover(job: JobConfig, tmp_path: Path, observer=None, **options: object) -> CutoverReport:
    settings = {**FAST, "report_dir": tmp_path / "reports", **options}
    return Cutover(job, CutoverOptions(**settings), observer=observer).run()


def saved(report: CutoverReport) -> tuple[dict, str]:
    md, js = (Path(p) for p in report.report_files)
    assert md.suffix == ".md" and js.suffix == ".json"
    return json.loads(js.read_text()), md.read_text()


@pytest.fixture
def migrated(pair, tmp_path):
    """Two emulators, a source history, and a job that has copied it all."""
    source, target = pair
    client = EventStoreDBClient(source.uri)
    history(client)
    job = make_job(source, target, tmp_path)
    run_until_caught_up(job)
    yield source, target, client, job
    client.close()


def test_refuses_while_the_relay_is_behind(migrated, tmp_path):
    source, _, client, job = migrated
    for n in range(7):
        client.append_to_stream("late", current_version=StreamState.ANY, events=[event(n)])
    report = cutover(job, tmp_path)
    assert report.outcome == "refused" and report.exit_code == EXIT_NOT_CAUGHT_UP
    assert "not caught up: 7 event(s) not copied yet" in report.message
    assert "--wait" in report.message
    assert report.lag_at_start is not None and report.lag_at_start.pending_events == 7
    assert report.lag_at_start.head_position == head(source)
    assert [(s.name, s.status) for s in report.steps] == [("caught-up", "failed")]
    data, md = saved(report)
    assert data["outcome"] == "refused" and "keep the clients on the source" in md

    # --wait with nobody running the relay: waits, then gives up with the lag
    waited = cutover(job, tmp_path, wait=True, lag_timeout=0.3)
    assert waited.outcome == "timed_out" and waited.exit_code == EXIT_NOT_CAUGHT_UP
    assert "7 event(s) not copied yet" in waited.message and "--run-relay" in waited.message


def test_system_records_are_no_lag(migrated, tmp_path):
    _, _, client, job = migrated
    client.append_to_stream("$stats-node", current_version=StreamState.ANY, events=[event(1)])
    report = cutover(job, tmp_path)
    assert report.exit_code == EXIT_COMPLETED, report.message
    assert report.lag_at_start is not None and report.lag_at_start.lag_bytes > 0


class Operator(CutoverObserver):
    """Stops the writer when asked to, like an operator would."""

    def __init__(self, stop_writers: threading.Event) -> None:
        self.stop_writers = stop_writers
        self.lags: list[int] = []

    def lag(self, lag, waited, timeout) -> None:
        self.lags.append(lag.pending_events)

    def confirm_writers_stopped(self) -> bool:
        self.stop_writers.set()
        return True


def test_completes_once_the_writers_stop(migrated, tmp_path):
    source, target, client, job = migrated
    client.create_subscription_to_all("projector", commit_position=0)
    checkpoints = tmp_path / "checkpoints.jsonl"
    head_before = head(source)
    checkpoints.write_text(
        json.dumps({"name": "read-model", "kind": "all", "position": head_before})
        + "\n"
        + json.dumps({"name": "order-0-view", "kind": "stream", "stream": "order-0", "revision": 2})
        + "\n"
    )
    stop_writers = threading.Event()
    written: list[int] = []

    def writer() -> None:
        with EventStoreDBClient(source.uri) as w:
            n = 0
            while not stop_writers.is_set() and n < 5000:
                w.append_to_stream(
                    f"cart-{n % 4}", current_version=StreamState.ANY, events=[event(n)]
                )
                n += 1
                stop_writers.wait(0.005)
            for m in range(20):  # writes in flight when the operator pulls the plug
                w.append_to_stream("cart-late", current_version=StreamState.ANY, events=[event(m)])
                n += 1
            written.append(n)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        report = cutover(
            job,
            tmp_path,
            Operator(stop_writers),
            wait=True,
            run_relay=True,
            quiet_seconds=3.0,  # a writer thread starved by a loaded machine is not "stopped"
            poll_seconds=0.3,
            checkpoints_file=checkpoints,
        )
    finally:
        stop_writers.set()
        thread.join()
    assert report.exit_code == EXIT_COMPLETED, report.message
    assert written and written[0] >= 20
    assert [s.name for s in report.steps] == [
        "caught-up",
        "writers",
        "final-copy",
        "verify",
        "subscriptions",
    ]
    assert all(s.status == "ok" for s in report.steps)
    # everything the writer wrote is on the target, and verify compared it
    assert user_event_count(target.store) == user_event_count(source.store) == 30 + written[0]
    assert report.verify is not None and report.verify.ok
    assert report.verify.streams_checked == 6 + 5  # order-*, cart-0..3, cart-late
    assert report.quiet is not None and report.quiet.quiet_for >= 3.0
    assert report.quiet.final_position == head(source)
    assert report.source_head == head(source) == report.checkpoint_position
    assert report.target_head == head(target)
    assert report.events_copied_during_cutover == written[0]
    assert report.writes_after_quiet == 0

    with (
        EventStore(source.uri, side="source") as s,
        EventStore(target.uri, side="target") as t,
    ):
        expected_all = translate_position(job, s, t, head_before).target
        expected_stream = translate_stream(job, s, t, "order-0", 2).target
    data, md = saved(report)
    assert data["outcome"] == "completed" and data["exit_code"] == 0
    rows = {r["name"]: r for r in data["catch_up_checkpoints"]}
    assert rows["read-model"]["target_position"] == expected_all is not None
    assert rows["order-0-view"]["target_revision"] == expected_stream == 2
    (group,) = data["persistent_subscriptions"]
    assert group["group"] == "projector" and group["action"] == "create" and group["start"] == 0
    assert not data["persistent_subscriptions_applied"]
    assert data["verify"]["ok"] and data["verify"]["events_compared"] > written[0]
    assert "**Outcome: completed**" in md
    assert f"point every writer and reader at the target, {report.target}" in md
    assert "| `$all` | `projector` | create |" in md
    assert "| read-model | $all @" in md
    assert "migrate-subscriptions --apply" in md
    assert Path(report.catch_up_file).is_file()


class ResumingWriter(CutoverObserver):
    """Writes three more events once, after the watch has seen a quiet poll."""

    def __init__(self, client: EventStoreDBClient) -> None:
        self.client = client
        self.done = False

    def quiet(self, watch: QuietWatch, timeout: float) -> None:
        if not self.done and watch.writes_seen == 0:
            for n in range(3):
                self.client.append_to_stream(
                    "resumed", current_version=StreamState.ANY, events=[event(n)]
                )
            self.done = True


def test_writes_resuming_during_the_quiet_watch_restart_it(migrated, tmp_path):
    source, target, client, job = migrated
    report = cutover(job, tmp_path, ResumingWriter(client), run_relay=True)
    assert report.exit_code == EXIT_COMPLETED, report.message
    assert report.quiet is not None
    assert report.quiet.writes_seen == 3 and report.quiet.writes_resumed == 1
    assert report.quiet.recent_streams == ["resumed"]
    assert report.quiet.last_write_position == head(source)
    assert [r.event_id for r in target.store.visible_records("resumed")] == [
        r.event_id for r in source.store.visible_records("resumed")
    ]
    assert "writes resumed 1 time(s)" in report.steps[1].detail


class NeverStopping(CutoverObserver):
    def __init__(self, client: EventStoreDBClient) -> None:
        self.client = client

    def quiet(self, watch: QuietWatch, timeout: float) -> None:
        self.client.append_to_stream("busy", current_version=StreamState.ANY, events=[event(0)])


def test_writes_that_never_stop_time_out_naming_the_stream(migrated, tmp_path):
    _, _, client, job = migrated
    report = cutover(job, tmp_path, NeverStopping(client), quiet_timeout=0.5)
    assert report.outcome == "timed_out" and report.exit_code == EXIT_NOT_CAUGHT_UP
    assert "writes kept arriving" in report.message and "busy" in report.message
    assert report.verify is None


def test_fails_when_verify_finds_a_difference(migrated, tmp_path):
    _, target, _, job = migrated
    tampered = ProposedEvent(str(uuid.uuid4()), "Forged", "application/json", b"{}", b"{}")
    target.store.append("order-3", ANY, [tampered])
    report = cutover(job, tmp_path)
    assert report.outcome == "failed" and report.exit_code == EXIT_CHECK_FAILED
    assert "verify found 1 difference(s) in 1 stream(s)" in report.message
    assert report.verify is not None and not report.verify.ok
    (difference,) = report.verify.differences
    assert difference.stream == "order-3" and difference.event_id == tampered.event_id
    assert [s.status for s in report.steps] == ["ok", "ok", "ok", "failed"]
    data, md = saved(report)
    assert data["verify"]["differences_total"] == 1
    assert "DIFFERENT" in md and "`order-3`" in md
    assert "keep the clients on the source" in md and "point every writer" not in md

    # --sample: a sample that takes in the tampered stream fails the same way
    sampled = cutover(job, tmp_path, sample=10, seed=1)
    assert sampled.exit_code == EXIT_CHECK_FAILED and sampled.verify.sample == 10


class LateWriter(CutoverObserver):
    def __init__(self, client: EventStoreDBClient) -> None:
        self.client = client

    def verify_progress(self, done: int, total: int) -> None:
        if done == 1:
            self.client.append_to_stream(
                "after-quiet", current_version=StreamState.ANY, events=[event(0)]
            )


def test_writes_after_the_quiet_period_fail_the_cutover(migrated, tmp_path):
    _, _, client, job = migrated
    report = cutover(job, tmp_path, LateWriter(client))
    assert report.outcome == "failed" and report.exit_code == EXIT_CHECK_FAILED
    assert report.verify is not None and report.verify.ok
    assert report.writes_after_quiet == 1
    assert "after-quiet" in report.message and "a writer is still running" in report.message


class Declining(CutoverObserver):
    def confirm_writers_stopped(self) -> bool:
        return False


def test_operator_declining_aborts(migrated, tmp_path):
    _, _, _, job = migrated
    report = cutover(job, tmp_path, Declining())
    assert report.outcome == "aborted" and report.exit_code == EXIT_ABORTED
    assert [(s.name, s.status) for s in report.steps] == [
        ("caught-up", "ok"),
        ("writers", "failed"),
    ]
    assert saved(report)[0]["outcome"] == "aborted"


def test_apply_subscriptions_creates_the_groups(migrated, tmp_path):
    source, target, _, job = migrated
    with EventStoreDBClient(source.uri) as src:
        src.create_subscription_to_stream("orders", "order-0", stream_position=0)
    report = cutover(job, tmp_path, apply_subscriptions=True)
    assert report.exit_code == EXIT_COMPLETED, report.message
    assert report.persistent_subscriptions_applied
    with EventStoreDBClient(target.uri) as dst:
        info = dst.get_subscription_info("orders", "order-0")
    assert info.group_name == "orders"
    assert "migrate-subscriptions --apply" not in "\n".join(report.next_steps)


def test_subscriptions_already_on_the_target_are_not_to_be_re_created(migrated, tmp_path):
    source, _, _, job = migrated
    with EventStoreDBClient(source.uri) as src:
        src.create_subscription_to_stream("orders", "order-0", stream_position=0)
    first = cutover(job, tmp_path, apply_subscriptions=True)
    assert first.exit_code == EXIT_COMPLETED, first.message
    again = cutover(job, tmp_path)  # listed only: the group stands on the target unchanged
    assert again.exit_code == EXIT_COMPLETED, again.message
    assert [p.action for p in again.persistent_subscriptions] == ["unchanged"]
    assert not any("re-create" in step for step in again.next_steps), again.next_steps


def test_no_secrets_in_the_report(tmp_path):
    with Emulator(tls=True) as source, Emulator(tls=True) as target:
        assert "changeit" in source.uri
        job = make_job(source, target, tmp_path)
        report = cutover(job, tmp_path)  # nothing to copy: completes at once
    assert report.exit_code == EXIT_COMPLETED, report.message
    data, md = saved(report)
    assert "changeit" not in json.dumps(data) and "changeit" not in md
    assert "tlsCaFile" not in md and report.target.startswith("esdb://127.0.0.1:")


class Interrupting(CutoverObserver):
    """Sets the cutover's abort flag, as the CLI's Ctrl-C handler does."""

    def __init__(self) -> None:
        self.cutover: Cutover | None = None

    def quiet(self, watch: QuietWatch, timeout: float) -> None:
        assert self.cutover is not None
        self.cutover.abort.set()


def test_abort_flag_stops_at_the_next_check_with_a_report(migrated, tmp_path):
    _, _, _, job = migrated
    observer = Interrupting()
    options = CutoverOptions(**FAST, report_dir=tmp_path / "reports")
    observer.cutover = Cutover(job, options, observer=observer)
    report = observer.cutover.run()
    assert report.outcome == "aborted" and report.exit_code == EXIT_ABORTED
    assert report.message == "interrupted by the operator"
    assert [(s.name, s.status) for s in report.steps][-1] == ("writers", "failed")
    assert saved(report)[0]["outcome"] == "aborted"


def test_a_checkpoint_that_cannot_be_translated_fails_after_the_rest(migrated, tmp_path):
    _, _, _, job = migrated
    checkpoints = tmp_path / "checkpoints.csv"
    checkpoints.write_text(
        "name,kind,stream,position,revision\n"
        "good,stream,order-0,,1\n"
        "typo,stream,,,1\n"  # kind stream without a stream
    )
    report = cutover(job, tmp_path, checkpoints_file=checkpoints)
    assert report.outcome == "failed" and report.exit_code == EXIT_CHECK_FAILED
    assert "1 catch-up checkpoint(s) could not be translated" in report.message
    assert report.verify is not None and report.verify.ok
    rows = {r["name"]: r for r in report.catch_up_checkpoints}
    assert rows["good"]["target_revision"] == "1" and not rows["good"]["error"]
    assert rows["typo"]["error"] == "kind stream needs a stream"
    assert Path(report.catch_up_file).suffix == ".csv"
    _, md = saved(report)
    assert "| typo |" in md and "kind stream needs a stream" in md
    # FAILED: the clients stay on the source until the row is fixed and the cutover completes
    assert "point every writer" not in md and "point every writer" not in report.next_steps[0]
    assert "keep the clients on the source" in report.next_steps[0]
    assert any(str(checkpoints.name) in step or "catch-up" in step for step in report.next_steps)


def test_two_reports_of_the_same_second_are_both_kept(tmp_path):
    """Two cutovers refused within one second (a retrying script): the second report gets
    its own files, and the first stays as it was."""
    started = datetime(2026, 12, 8, 1, 2, 3, tzinfo=UTC)
    first = not_started("no job file", job_id="orders", options={}, started_at=started)
    second = not_started("still no job file", job_id="orders", options={}, started_at=started)
    first_paths = write_reports(first, tmp_path)
    second_paths = write_reports(second, tmp_path)
    assert [p.name for p in first_paths] == [
        "cutover-orders-20261208T010203Z.md",
        "cutover-orders-20261208T010203Z.json",
    ]
    assert [p.name for p in second_paths] == [
        "cutover-orders-20261208T010203Z-2.md",
        "cutover-orders-20261208T010203Z-2.json",
    ]
    assert "still no job file" not in first_paths[0].read_text()
    assert json.loads(second_paths[1].read_text())["report_files"] == [str(p) for p in second_paths]

"""`status`, `run` and `backfill` tell the truth (issue 16, findings 1, 2, 3, 9 and the busy
message of 8), through the `esdb-relay` command in process, against emulators and SQLite."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from typer.testing import CliRunner

from core.checkpoint import open_store
from esdb_emulator import Emulator
from esdb_emulator.store import ANY, ProposedEvent
from handlers.cli.main import app

runner = CliRunner()


@pytest.fixture
def pair():
    with Emulator() as source, Emulator() as target:
        yield source, target


def add(db: Emulator, n: int, stream: str = "order-1") -> None:
    db.store.append(
        stream,
        ANY,
        [ProposedEvent(str(uuid.uuid4()), "Placed", "application/json", b"{}") for _ in range(n)],
    )


def env_for(source: Emulator, target: Emulator, tmp_path, **extra: str) -> dict[str, str]:
    return {
        "ESDB_RELAY_JOB_ID": "cli-job",
        "ESDB_RELAY_SOURCE": source.uri,
        "ESDB_RELAY_TARGET": target.uri,
        "ESDB_RELAY_CHECKPOINT_STORE": f"sqlite:///{tmp_path}/cp.db",
        **extra,
    }


def invoke(args: list[str], env: dict[str, str]):
    return runner.invoke(app, args, env=env)


def flat(text: str) -> str:
    return " ".join(text.split())


def test_status_after_events_arrive_with_no_relay_running_is_not_caught_up(pair, tmp_path):
    """Finding 1: `lag … │ ETA caught up`, `"caught_up": true` while 2,000 events wait and
    nothing runs."""
    source, target = pair
    add(source, 50)
    env = env_for(source, target, tmp_path)
    done = invoke(["run", "--until-caught-up", "--no-progress"], env)
    assert done.exit_code == 0, done.output
    add(source, 2000, "order-2")
    shown = invoke(["status", "--json"], env)
    assert shown.exit_code == 0, shown.output
    figures = json.loads(shown.stdout)
    assert figures["caught_up"] is False and figures["state"] == "behind-and-not-running"
    assert (figures["lag_events"], figures["lag_events_exact"]) == (2000, True)
    assert figures["eta_seconds"] is None and figures["relay_running"] is False
    text = invoke(["status"], env)
    assert text.exit_code == 0
    assert "behind-and-not-running" in text.output and "none: no relay is running" in text.output
    assert "ETA caught up" not in flat(text.output.replace("│", " "))


def test_status_needs_no_transform_and_watch_refreshes_a_bounded_number_of_times(pair, tmp_path):
    """Finding 9: `status` failed with a configuration error when the job's transform module
    could not be imported here."""
    source, target = pair
    add(source, 5)
    env = env_for(source, target, tmp_path, ESDB_RELAY_TRANSFORM="no_such_module_here:fix")
    shown = invoke(["status"], env)
    assert shown.exit_code == 0, shown.output
    assert "not-started" in shown.output
    watched = invoke(["status", "--watch", "--json", "--interval", "0.2", "--count", "3"], env)
    assert watched.exit_code == 0, watched.output
    lines = [json.loads(line) for line in watched.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 3 and all(line["state"] == "not-started" for line in lines)
    live = invoke(["status", "--watch", "--interval", "0.2", "--count", "2"], env)
    assert live.exit_code == 0, live.output
    assert "not-started" in live.output
    # A run still needs it, and says so.
    run = invoke(["run", "--until-caught-up", "--no-progress"], env)
    assert run.exit_code != 0 and "no_such_module_here" in run.output


def test_a_dry_run_plans_the_whole_range_and_says_would_write(pair, tmp_path):
    """Finding 2: `backfill --dry-run` printed `"written": 4995` and planned one slice."""
    source, target = pair
    add(source, 1200)
    env = env_for(source, target, tmp_path, ESDB_RELAY_BUDGET__MAX_EVENTS="250")
    head = source.store.last_position
    target_head = target.store.last_position
    planned = invoke(["backfill", "--from", "0", "--dry-run"], env)
    assert planned.exit_code == 0, planned.output
    out = flat(planned.output)
    assert "would write 1,200 events" in out and "would copy" in out
    assert "written" not in out and "wrote" not in out
    assert f"planned up to {head:,}" in out
    assert re.search(r"in [5-9] slice\(s\)", out)  # the whole range, slice after slice
    assert target.store.last_position == target_head  # nothing was written
    assert open_store(env["ESDB_RELAY_CHECKPOINT_STORE"]).load(f"cli-job.backfill-0-{head}") is None


def test_totals_add_up_over_a_whole_run_and_a_rerun_says_it_copied_nothing(pair, tmp_path):
    """Finding 3: `{"read": 1233, "written": 0, "skipped": 0}`; only the last slice."""
    source, target = pair
    add(source, 1000)
    env = env_for(source, target, tmp_path, ESDB_RELAY_BUDGET__MAX_EVENTS="300")
    first = invoke(["run", "--until-caught-up", "--no-progress"], env)
    assert first.exit_code == 0, first.output
    out = flat(first.output)
    totals = re.search(
        r"this run: read ([\d,]+) records = ([\d,]+) copied \+ ([\d,]+) skipped "
        r"\(already on the target\) \+ ([\d,]+) filtered \(not copied by the job's rules\) "
        r"\+ ([\d,]+) dead-lettered; wrote ([\d,]+) events",
        out,
    )
    assert totals, out
    read, copied, skipped, filtered, dead, written = (
        int(g.replace(",", "")) for g in totals.groups()
    )
    assert read == copied + skipped + filtered + dead
    assert (copied, written, skipped, dead) == (1000, 1000, 0, 0)
    assert "job totals" in out and "1,000 events written" in out

    again = invoke(["run", "--until-caught-up", "--no-progress"], env)
    assert again.exit_code == 0, again.output
    out = flat(again.output)
    assert "this run copied nothing" in out
    assert "job totals (checkpoint at" in out and "1,000 events written" in out

    # A backfill over copied events: every record read is named (skipped, filtered).
    backfill = invoke(["backfill", "--from", "0"], env)
    assert backfill.exit_code == 0, backfill.output
    out = flat(backfill.output)
    totals = re.search(
        r"read ([\d,]+) records = 0 copied \+ ([\d,]+) skipped \(already on the target\) "
        r"\+ ([\d,]+) filtered",
        out,
    )
    assert totals, out
    read, skipped, filtered = (int(g.replace(",", "")) for g in totals.groups())
    assert read == skipped + filtered and skipped == 1000

    # `status` says what its counts are (the job's: a backfill keeps its own): the records a
    # slice stopped before its commit had written are counted as found, not as written.
    shown = flat(invoke(["status"], env).output.replace("│", " "))
    assert "events written 1,000 (of 1,003 read), by committed slices" in shown
    assert (
        "already on the target 0, not written again: there before the job, or written by a "
        "slice stopped before its commit and found by the next"
    ) in shown


def test_a_second_run_names_the_lease_holder_once_and_waits_quietly(pair, tmp_path):
    """Finding 8 (busy): `INFO slice busy` every second, no word of who holds the lease."""
    source, target = pair
    add(source, 20)
    env = env_for(source, target, tmp_path)
    store = open_store(env["ESDB_RELAY_CHECKPOINT_STORE"])
    lease = store.acquire("cli-job", "relay-on-host-b", 2.0)
    result = invoke(["run", "--until-caught-up", "--no-progress", "--idle-seconds", "0.1"], env)
    assert result.exit_code == 0, result.output
    busy = [line for line in result.stderr.splitlines() if "busy" in line]
    assert len(busy) == 1, result.stderr  # once, though it waited through many attempts
    assert "'relay-on-host-b'" in busy[0]
    assert lease.expires_at.isoformat(timespec="seconds") in busy[0]
    assert "caught up" in result.output

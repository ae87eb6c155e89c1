"""Liveness: every failure is visible. A failed slice exits the CLI non-zero with an ERROR JSON
line; a job that fails slice after slice says `stalled` in `status` (CLI and handler action) and
in the handler's slice results; a handler invocation whose slice raised never answers "ok".
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from core.errors import ConflictError, RelayError
from core.invocation import failure_response, handle
from core.relay import STALL_AFTER_SLICES, Relay
from esdb_emulator import Emulator
from esdb_emulator.store import NO_STREAM, ProposedEvent
from esdb_emulator.workload import Workload, generate, stream_name
from tests.engine.helpers import make_job
from tests.reliability.helpers import ROOT, check_replica, child_env


def refuse_on_target(source: Emulator, target: Emulator) -> None:
    """A target stream holding an event the source never had: the relay must stop there
    (ConflictError) rather than write around it, slice after slice."""
    generate(source.store, Workload(events=300, streams=10, seed=8, links=False))
    target.store.append(
        stream_name(0),
        NO_STREAM,
        [ProposedEvent(str(uuid.uuid4()), "Foreign", "application/json", b"{}", b"")],
    )


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("esdb-relay")), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def error_lines(stderr: str) -> list[dict]:
    lines = []
    for line in stderr.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") == "error":
            lines.append(entry)
    return lines


def test_a_failing_relay_exits_non_zero_and_logs_an_error_line(tmp_path):
    with Emulator() as source, Emulator() as target:
        refuse_on_target(source, target)
        env = child_env("live", source, target, f"sqlite:///{tmp_path}/cp.db")
        run = cli(env, "run", "--until-caught-up", "--log-format", "json", "--no-progress")
        assert run.returncode == 1, run.stderr[-2000:]
        errors = error_lines(run.stderr)
        assert errors, run.stderr[-2000:]
        assert "slice failed" in errors[0]["message"]
        assert errors[0]["liveness"]["failing_slices"] >= 1
        assert errors[0]["job_id"] == "live"


def test_status_says_stalled_after_repeated_failures(tmp_path):
    with Emulator() as source, Emulator() as target:
        refuse_on_target(source, target)
        job = make_job(source, target, tmp_path, job_id="live")
        with Relay(job) as relay:
            for attempt in range(1, STALL_AFTER_SLICES + 1):
                assert not relay.progress().stalled
                with pytest.raises(ConflictError) as failure:
                    relay.run_once()
                assert failure.value.details["failing_slices"] == attempt
            status = relay.progress()
        assert status.stalled
        assert status.consecutive_failures == STALL_AFTER_SLICES
        assert any(w.startswith("stalled:") for w in status.warnings)

        env = child_env("live", source, target, job.checkpoint_store)
        shown = cli(env, "status", "--json")
        assert shown.returncode == 0, shown.stderr
        reported = json.loads(shown.stdout)
        assert reported["stalled"] is True and reported["state"] == "stalled"
        assert reported["consecutive_failures"] == STALL_AFTER_SLICES
        text = cli(env, "status")
        assert "stalled" in text.stdout


@pytest.fixture
def handler_env(monkeypatch, tmp_path):
    def configure(source: Emulator, target: Emulator) -> None:
        env = child_env("live-handler", source, target, f"sqlite:///{tmp_path}/cp.db")
        env["ESDB_RELAY_BUDGET__DEADLINE_SECONDS"] = "1"  # a failing slice gives up quickly
        for key, value in env.items():
            if key.startswith("ESDB_RELAY_"):
                monkeypatch.setenv(key, value)

    return configure


def test_a_handler_whose_slices_fail_never_answers_ok_and_reports_the_stall(handler_env, caplog):
    with Emulator() as source, Emulator() as target:
        generate(source.store, Workload(events=300, streams=10, seed=8, links=False))
        handler_env(source, target)
        # The target refuses every write (repeated transient failures), reads still work.
        target.faults.update(unavailable_rate=1.0, methods={"Append", "BatchAppend"})
        chained: list[dict] = []
        caplog.set_level(logging.ERROR, logger="esdb_relay")
        for _ in range(STALL_AFTER_SLICES):
            with pytest.raises(RelayError) as failure:
                handle({}, remaining_seconds=60, chain=chained.append)
        assert chained == []  # a failed slice chains nothing
        # What the GCP and Azure HTTP triggers answer with (status 500).
        body = failure_response(failure.value)
        assert body["status"] == "failed" and body["error"]
        assert body["stalled"] is True and body["failing_slices"] == STALL_AFTER_SLICES
        logged = [r for r in caplog.records if r.getMessage().startswith("slice failed")]
        assert [r.liveness["failing_slices"] for r in logged] == [1, 2, 3]
        assert logged[-1].liveness["stalled"] is True

        status = handle({"action": "status"}, remaining_seconds=60, chain=chained.append)
        assert status["result"]["stalled"] is True
        assert status["result"]["consecutive_failures"] == STALL_AFTER_SLICES

        target.faults.reset()  # the target comes back: the next slice says the stall is over
        response = handle({}, remaining_seconds=60, chain=chained.append)
        assert response["status"] == "ok"
        assert response["result"]["stalled"] is False
        assert response["result"]["failing_slices"] == 0
        assert response["result"]["events_written"] > 0
        while response["next_action"] == "continue":
            response = handle(chained[-1], remaining_seconds=60, chain=chained.append)
        assert check_replica(source.store, target.store).clean


def test_cli_run_fails_when_the_target_cannot_be_reached(tmp_path):
    """No silent start either: an unreachable target is an error exit, not an idle loop."""
    with Emulator() as source:
        generate(source.store, Workload(events=10, streams=2, seed=1, links=False))
        env = child_env(
            "live", source, "esdb://127.0.0.1:1?Tls=false", f"sqlite:///{tmp_path}/cp.db"
        )
        run = cli(env, "run", "--until-caught-up", "--connect-timeout", "1", "--no-progress")
        assert run.returncode == 1
        assert "target" in run.stderr

"""`esdb-relay verify --state` as a real process: Ctrl-C (SIGINT) stops it between two
streams with the progress saved, and the same command then finishes the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from esdb_emulator import Emulator, FaultConfig
from esdb_emulator.store import ANY, ProposedEvent
from tests.engine.helpers import make_job, run_until_caught_up

ROOT = Path(__file__).resolve().parents[2]
STREAMS = 60


def command(job, state: Path) -> list[str]:
    return [sys.executable, "-m", "handlers.cli.main", "verify", "--state", str(state)]


def test_sigint_saves_progress_and_the_rerun_finishes(tmp_path):
    faults = FaultConfig(latency_ms=40)  # slow reads: the run is still checking when signalled
    with Emulator() as source, Emulator(faults=faults) as target:
        for n in range(STREAMS * 2):
            event = ProposedEvent(str(uuid.uuid4()), "Placed", "application/json", b"{}", b"{}")
            source.store.append(f"order-{n % STREAMS}", ANY, [event])
        job = make_job(source, target, tmp_path)
        target.faults.update(latency_ms=0)
        run_until_caught_up(job)
        target.faults.update(latency_ms=40)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ESDB_RELAY_")},
            "ESDB_RELAY_JOB_ID": job.job_id,
            "ESDB_RELAY_SOURCE": source.uri,
            "ESDB_RELAY_TARGET": target.uri,
            "ESDB_RELAY_CHECKPOINT_STORE": job.checkpoint_store,
            "COLUMNS": "100",
        }
        state = tmp_path / "verify.state"
        proc = subprocess.Popen(
            command(job, state),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)  # the state file appears once the scan is done
            assert state.exists(), "verify never saved its stream list"
            proc.send_signal(signal.SIGINT)
            output, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 130, output
        assert "progress saved to" in output
        saved = json.loads(state.read_text())
        assert len(saved["streams"]) == STREAMS and saved["done"] < STREAMS
        assert saved["report"]["streams_checked"] == saved["done"]

        target.faults.update(latency_ms=0)
        rerun = subprocess.run(
            [*command(job, state), "--json"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-2000:]
        report = json.loads(rerun.stdout)
        assert report["ok"] and report["streams_checked"] == STREAMS
        assert report["events_compared"] == STREAMS * 2
        assert not state.exists()

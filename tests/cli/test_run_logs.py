"""`esdb-relay run` following the tail, in a subprocess with text logs (the real stderr):
each slice line carries its figures, one line says it follows the tail once caught up, and
the idle slices after it (one every --idle-seconds) are not logged one by one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from esdb_emulator import Emulator
from esdb_emulator.store import NO_STREAM, ProposedEvent

ROOT = Path(__file__).resolve().parents[2]


def test_text_logs_carry_figures_and_stay_quiet_while_following(tmp_path):
    with Emulator() as source, Emulator() as target:
        for s in range(5):
            source.store.append(
                f"order-{s}",
                NO_STREAM,
                [ProposedEvent(str(uuid.uuid4()), "Placed", "application/json", b"{}")] * 1,
            )
        env = {
            **os.environ,
            "ESDB_RELAY_JOB_ID": "follow",
            "ESDB_RELAY_SOURCE": source.uri,
            "ESDB_RELAY_TARGET": target.uri,
            "ESDB_RELAY_CHECKPOINT_STORE": f"sqlite:///{tmp_path}/cp.db",
            "ESDB_RELAY_BUDGET__MAX_EVENTS": "2",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "handlers.cli.main", "run", "--no-progress",
             "--idle-seconds", "0.02"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        lines: list[str] = []
        assert proc.stderr is not None
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")))
        reader.start()
        try:
            for _ in range(600):  # bounded: up to 60 s to catch up
                if any("following the tail" in line for line in lines) or proc.poll() is not None:
                    break
                time.sleep(0.1)
            time.sleep(2)  # about a hundred idle slices (0.02 s apart) while following
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=10)
    text = "".join(lines)
    assert proc.returncode == 130, text
    slice_lines = [line for line in lines if " slice ok " in line]
    assert slice_lines and all("read=" in line and "position=" in line for line in slice_lines)
    assert any("written=2 " in line and "lag=" in line for line in slice_lines), text
    assert text.count("following the tail") == 1, text
    assert len(slice_lines) <= 5, "idle slices while following are not logged one by one"
    assert "INFO slice ok\n" not in text

"""The garbage collector is set up once per process for copying (core/engine/collector.py):
the heap that exists when the first slice starts is frozen, and young collections are rarer.
Run in a fresh interpreter: the test process's own collector may already be set up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = """
import gc, json, sys, tempfile
from pathlib import Path
from core.checkpoint import open_store
from core.engine import Budget, run_slice
from core.engine.collector import YOUNG_THRESHOLD
from core.eventstore import EventStore
from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import make_job

seen = {"before": [gc.get_threshold()[0], gc.get_freeze_count()]}
with Emulator() as source, Emulator() as target, tempfile.TemporaryDirectory() as tmp:
    generate(source.store, Workload(events=50, streams=5, seed=1))
    job = make_job(source, target, Path(tmp))
    with EventStore(source.uri, side="source") as s, EventStore(target.uri, side="target") as t:
        store = open_store(job.checkpoint_store)
        run_slice(job, s, t, store, Budget.from_job(job))
        seen["first"] = [gc.get_threshold()[0], gc.get_freeze_count()]
        frozen = gc.get_freeze_count()
        garbage = [[] for _ in range(1000)]
        for item in garbage:
            item.append(item)  # cycles made after the first slice
        del garbage, item
        run_slice(job, s, t, store, Budget.from_job(job))
        seen["second"] = [gc.get_threshold()[0], gc.get_freeze_count()]
        seen["collected"] = gc.collect()
seen["young"] = YOUNG_THRESHOLD
print(json.dumps(seen))
"""


def test_the_first_slice_freezes_the_start_up_heap_and_later_ones_change_nothing():
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["before"][0] != seen["young"] and seen["before"][1] == 0
    assert seen["first"] == [seen["young"], seen["first"][1]] and seen["first"][1] > 0
    assert seen["second"] == seen["first"], "a second slice froze again"
    assert seen["collected"] >= 1000, "cycles made after the first slice stay collectable"


_EXIT_SCRIPT = """
import atexit, gc, tempfile
from pathlib import Path

# Registered before the slice's own exit hook, so it runs after it (atexit is last in,
# first out): what the interpreter's exit collections would still walk.
atexit.register(lambda: print("walked at exit:", len(gc.get_objects())))

from core.checkpoint import open_store
from core.engine import Budget, run_slice
from core.eventstore import EventStore
from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import make_job

kept = [[i] for i in range(20_000)]  # made after the first slice's freeze: below
with Emulator() as source, Emulator() as target, tempfile.TemporaryDirectory() as tmp:
    generate(source.store, Workload(events=50, streams=5, seed=1))
    job = make_job(source, target, Path(tmp))
    with EventStore(source.uri, side="source") as s, EventStore(target.uri, side="target") as t:
        run_slice(job, s, t, open_store(job.checkpoint_store), Budget.from_job(job))
    kept += [[i] for i in range(20_000)]
    print("walked before exit:", len(gc.get_objects()))
"""


def test_a_process_that_copied_exits_without_walking_its_heap():
    """The interpreter's last collections walk every object not frozen; after a slice, the
    exit begins by freezing them (docs/benchmarks.md: ~0.2 s of CPU per exit of a 64-writer run)."""
    out = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    walked = {
        line.split(":")[0]: int(line.split(":")[1])
        for line in out.stdout.splitlines()
        if ":" in line
    }
    assert walked["walked before exit"] > 20_000, walked  # the 20,000 lists made since
    assert walked["walked at exit"] < 1_000, walked

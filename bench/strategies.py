"""The replication strategies the benchmark compares, and how to run one in its own process.

A run: a fresh target emulator (own process, emulated latency on every call), the strategy in
its own process against the shared source emulator, stopped after the workload's events or
`seconds`, whichever first. Our relay runs with the product's default budget and batch limits.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bench.emulator_server import multi_append_switch_available
from bench.processes import Measured, python_module, run_measured, served_emulator
from core.config import JobConfig


@dataclass(frozen=True)
class Strategy:
    name: str
    kind: Literal["baseline", "relay"]
    writers: int = 1  # baseline writer threads
    mode: Literal["ordered", "partitioned"] = "ordered"
    partitions: int = 1
    multi_append: bool = False  # does the target offer multi-stream append


BASELINE_ORDERED = Strategy("Replicator strategy, ordered", "baseline", writers=1)
BASELINE_PARTITIONED = Strategy("Replicator strategy, 6 partitions", "baseline", writers=6)
STRATEGIES = (
    BASELINE_ORDERED,
    BASELINE_PARTITIONED,
    Strategy("ours, ordered", "relay"),
    Strategy("ours, ordered + multi-append", "relay", multi_append=True),
    # partitioned runs get a current server (multi-append offered; the engine may use it)
    Strategy("ours, partitioned 8", "relay", mode="partitioned", partitions=8, multi_append=True),
    Strategy("ours, partitioned 32", "relay", mode="partitioned", partitions=32, multi_append=True),
    Strategy("ours, partitioned 64", "relay", mode="partitioned", partitions=64, multi_append=True),
)


def multi_append_available() -> bool:
    """The emulator's switch, the client call and the engine's use of it have all landed."""
    from core.eventstore import EventStore

    return (
        multi_append_switch_available()
        and hasattr(EventStore, "supports_multi_append")
        and "multi_append" in JobConfig.model_fields
        and importlib.util.find_spec("core.engine.ordered") is not None
    )


def partitioned_mode_available() -> bool:
    """Whether the engine acts on `mode = "partitioned"` (before it does, such runs are
    ordered runs under another name, and the report says so). The engine's own modules, not
    the text of its package's `__init__` (a docstring since the engine became a package,
    which turned both probes false and left multi-append and partitioned rows out)."""
    return (
        "partitions" in JobConfig.model_fields
        and importlib.util.find_spec("core.engine.partitioned") is not None
    )


def relay_job(source: str, target: str, strategy: Strategy, folder: Path) -> Path:
    job = {
        "job_id": "bench",
        "source": source,
        "target": target,
        "mode": strategy.mode,
        "partitions": strategy.partitions,
        "checkpoint_store": f"sqlite:///{folder}/checkpoints.db",
        # the runner passes the time left as the slice deadline; keep none of it back
        "budget": {"safety_margin_seconds": 0},
    }
    if strategy.multi_append and "multi_append" in JobConfig.model_fields:
        job["multi_append"] = True  # opt-in where the engine makes it one
    path = folder / "job.json"
    path.write_text(json.dumps(job))
    return path


def run_strategy(
    strategy: Strategy, source: str, events: int, seconds: float, latency_ms: float
) -> Measured:
    """One bounded run of `strategy` from `source` into a fresh target."""
    # With the switch available, the target offers multi-append only to the strategy that
    # is about it, so "ours, ordered" measures the path older servers get.
    switch = multi_append_switch_available()
    with (
        served_emulator(
            latency_ms=latency_ms, multi_append=strategy.multi_append or not switch
        ) as target,
        tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp,
    ):
        if strategy.kind == "baseline":
            argv = python_module(
                "bench.baselines",
                "--source", source,
                "--target", target,
                "--writers", str(strategy.writers),
                "--events", str(events),
                "--seconds", str(seconds),
            )  # fmt: skip
        else:
            config = relay_job(source, target, strategy, Path(tmp))
            argv = python_module(
                "bench.relay_runner", "--config", str(config), "--seconds", str(seconds)
            )
        return run_measured(argv, timeout=seconds + 300)

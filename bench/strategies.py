"""The replication strategies the benchmark compares, and how to run one in its own process.

A run: a fresh target emulator (own process, emulated latency on every call), the strategy in
its own process against the shared source emulator, stopped after the workload's events or
`seconds`, whichever first. Our relay runs with the product's default budget and batch limits.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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
    target_version: str | None = None  # the target emulator's KurrentDB version (None: 25.1)

    @property
    def offered(self) -> str:
        """What the target offers, as the report's column says it."""
        if self.target_version == "26.1":
            return "AppendRecords (26.1)"
        return "offered" if self.multi_append else "no"


BASELINE_ORDERED = Strategy("Replicator strategy, ordered", "baseline", writers=1)
BASELINE_PARTITIONED = Strategy("Replicator strategy, 6 partitions", "baseline", writers=6)
STRATEGIES = (
    BASELINE_ORDERED,
    BASELINE_PARTITIONED,
    Strategy("ours, ordered", "relay"),
    Strategy("ours, ordered + multi-append", "relay", multi_append=True),
    Strategy("ours, ordered + AppendRecords", "relay", multi_append=True, target_version="26.1"),
    # partitioned runs get a current server (multi-append offered; the engine may use it)
    Strategy("ours, partitioned 8", "relay", mode="partitioned", partitions=8, multi_append=True),
    Strategy("ours, partitioned 32", "relay", mode="partitioned", partitions=32, multi_append=True),
    Strategy("ours, partitioned 64", "relay", mode="partitioned", partitions=64, multi_append=True),
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
    # The target offers multi-append only to the strategies that are about it, so "ours,
    # ordered" measures the path older servers get.
    with (
        served_emulator(
            latency_ms=latency_ms,
            multi_append=strategy.multi_append,
            server_version=strategy.target_version,
        ) as target,
        tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp,
    ):
        argv = strategy_argv(strategy, source, target, events, seconds, Path(tmp))
        return run_measured(argv, timeout=seconds + 300)


def strategy_argv(
    strategy: Strategy, source: str, target: str, events: int, seconds: float, folder: Path
) -> list[str]:
    """The command that runs one bounded run of `strategy` from `source` into `target` (a
    relay's job file goes in `folder`)."""
    if strategy.kind == "baseline":
        return python_module(
            "bench.baselines",
            "--source", source,
            "--target", target,
            "--writers", str(strategy.writers),
            "--events", str(events),
            "--seconds", str(seconds),
        )  # fmt: skip
    config = relay_job(source, target, strategy, folder)
    return python_module("bench.relay_runner", "--config", str(config), "--seconds", str(seconds))

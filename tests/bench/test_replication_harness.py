"""The replication benchmark's runners on a tiny workload: each copies the source exactly and
reports sane figures, so the harness cannot rot unnoticed. Emulators in this process; the
runners in their own, as in the benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import cost_model
from bench.processes import Measured, python_module, run_measured
from bench.replication_bench import (
    BEGIN,
    END,
    Ceiling,
    Plan,
    Report,
    Row,
    targets,
    write_doc,
)
from bench.strategies import (
    BASELINE_ORDERED,
    BASELINE_PARTITIONED,
    Strategy,
    relay_job,
    run_strategy,
)
from bench.workloads import BenchWorkload, fill
from esdb_emulator import Emulator
from tests.engine.helpers import differences, user_event_count

TINY = BenchWorkload(shape="random", events=300, streams=40, min_payload=512, max_payload=1024)


@pytest.fixture(scope="module")
def source():
    with Emulator() as db:
        fill(db.store, TINY)
        yield db


def _check_copy(source: Emulator, target: Emulator, measured: Measured) -> None:
    assert differences(source.store, target.store) == []
    assert user_event_count(target.store) == TINY.events
    assert measured.output["events"] == TINY.events
    assert measured.output["seconds"] > 0
    assert measured.peak_rss_mib > 20  # a Python process with grpc loaded
    assert measured.cpu_seconds > 0
    # what the process spent before its first event, reported apart (bench: "after start-up")
    assert 0 < measured.output["startup_cpu_seconds"] < measured.cpu_seconds


@pytest.mark.parametrize("writers", [1, 6])
def test_replicator_baseline_copies_exactly(source: Emulator, writers: int) -> None:
    with Emulator() as target:
        measured = run_measured(
            python_module(
                "bench.baselines",
                "--source",
                source.uri,
                "--target",
                target.uri,
                "--writers",
                str(writers),
                "--events",
                str(TINY.events),
                "--seconds",
                "60",
            ),
            timeout=120,
        )
        _check_copy(source, target, measured)


@pytest.mark.parametrize(
    "strategy",
    [
        Strategy("ordered", "relay"),
        Strategy("ordered, multi-append", "relay", multi_append=True),
        Strategy("p8", "relay", mode="partitioned", partitions=8),
    ],
)
def test_relay_runner_copies_exactly(source: Emulator, strategy: Strategy, tmp_path: Path) -> None:
    with Emulator() as target:
        config = relay_job(source.uri, target.uri, strategy, tmp_path)
        assert json.loads(config.read_text())["mode"] == strategy.mode
        measured = run_measured(
            python_module("bench.relay_runner", "--config", str(config), "--seconds", "60"),
            timeout=120,
        )
        _check_copy(source, target, measured)


def test_append_records_row_runs_against_a_26_1_target(source: Emulator) -> None:
    strategy = Strategy("r", "relay", multi_append=True, target_version="26.1")
    measured = run_strategy(strategy, source.uri, TINY.events, 60.0, 0.0)
    assert measured.output["events"] == TINY.events
    assert strategy.offered == "AppendRecords (26.1)"


def test_baseline_stops_at_its_event_bound(source: Emulator) -> None:
    with Emulator() as target:
        measured = run_measured(
            python_module(
                "bench.baselines",
                "--source",
                source.uri,
                "--target",
                target.uri,
                "--events",
                "50",
                "--seconds",
                "60",
            ),
            timeout=120,
        )
        assert measured.output["events"] == 50
        assert user_event_count(target.store) == 50


def _row(label: str, strategy: Strategy, events: int, latency: float = 5.0) -> Row:
    return Row(label, latency, strategy, events, 10.0, 100.0, 1.0, 1000.0)


def test_targets_compare_ratios_within_the_run() -> None:
    rnd = TINY
    real = TINY.model_copy(update={"shape": "realistic"})
    plan = Plan(rnd, real, (5.0,), (5.0,), 10.0, (1, 2), 10.0)
    p64 = Strategy("ours, partitioned 64", "relay", mode="partitioned", partitions=64)
    ordered = Strategy("ours, ordered", "relay")
    report = Report(
        rows=[
            _row(rnd.label, BASELINE_ORDERED, 1_000),
            _row(rnd.label, BASELINE_PARTITIONED, 1_000),
            _row(rnd.label, p64, 30_000),  # 30x the partitioned baseline
            _row(real.label, BASELINE_ORDERED, 1_000),
            _row(real.label, ordered, 2_000),  # 2x: short of 3x
        ],
        # p64 at 0.3 of the batch-append ceiling, 0.5 of the bare copy
        ceilings={rnd.label: [Ceiling(5.0, {1: 4_000.0, 64: 10_000.0}, 6_000.0)]},
    )
    lines = "\n".join(targets(report, plan))
    assert "partitioned 64 / Replicator partitioned-6: **30.00** (target ≥ 20) — PASS" in lines
    assert "batch-append ceiling: **0.30** (target ≥ 0.5) — MISS" in lines
    assert "realistic workload / Replicator ordered: **2.00** (target ≥ 3) — MISS" in lines
    assert "ordered + multi-append / Replicator ordered: not measured" in lines
    assert "bare copy (above) does 6,000 events/s here, **60.00x**" in lines
    assert "partitioned 64 reaches **0.50** of it" in lines
    assert "ordered + AppendRecords (26.1) / Replicator ordered: not measured" in lines
    assert (
        "relay CPU s per million events, ours, partitioned 64: **33** after start-up, the median "
        "of 1 runs (33; the table's run 33 with start-up; target ≤ 90) — PASS"
    ) in lines


def test_a_cpu_target_is_the_median_of_its_runs() -> None:
    rnd = TINY
    plan = Plan(rnd, rnd.model_copy(update={"shape": "realistic"}), (5.0,), (5.0,), 10, (1, 2), 10)
    p8 = Strategy("ours, partitioned 8", "relay", mode="partitioned", partitions=8)
    row = _row(rnd.label, p8, 10_000)  # 1 CPU s over 10,000 events: 100 per million
    row.more_cpu_runs = [85.0, 120.0]
    lines = "\n".join(targets(Report(rows=[row]), plan))
    assert (
        "ours, partitioned 8: **100** after start-up, the median of 3 runs (100, 85, 120;"
    ) in lines
    row.more_cpu_runs = [85.0, 80.0]
    assert "ours, partitioned 8: **85** after start-up" in "\n".join(
        targets(Report(rows=[row]), plan)
    )


def test_issue_18_ratios_are_taken_within_the_run() -> None:
    rnd = TINY
    plan = Plan(rnd, rnd.model_copy(update={"shape": "realistic"}), (5.0,), (5.0,), 10, (1, 2), 10)
    records = Strategy("ours, ordered + AppendRecords", "relay", target_version="26.1")
    p8 = Strategy("ours, partitioned 8", "relay", mode="partitioned", partitions=8)
    p64 = Strategy("ours, partitioned 64", "relay", mode="partitioned", partitions=64)
    report = Report(
        rows=[
            _row(rnd.label, BASELINE_ORDERED, 1_000),
            _row(rnd.label, BASELINE_PARTITIONED, 3_500),
            _row(rnd.label, records, 27_000),
            _row(rnd.label, p8, 32_000),
            _row(rnd.label, p64, 28_000),
        ]
    )
    lines = "\n".join(targets(report, plan))
    assert "AppendRecords (26.1) / Replicator ordered: **27.00** (target ≥ 25) — PASS" in lines
    # against the fastest of our partitioned rows
    assert "our fastest partitioned (partitioned 8): **0.84** (target ≥ 0.9) — MISS" in lines
    assert (
        "issue 18: our fastest partitioned (partitioned 8) / Replicator partitioned-6: **9.14** "
        "(target ≥ 10) — MISS"
    ) in lines


def test_write_doc_replaces_only_its_section(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Older section\n\nkept\n")
    write_doc(doc, f"{BEGIN}\nfirst\n{END}\n")
    write_doc(doc, f"{BEGIN}\nsecond\n{END}\n")
    text = doc.read_text()
    assert "## Older section\n\nkept" in text
    assert "second" in text and "first" not in text
    assert text.count(BEGIN) == 1


def test_cost_model_counts_slices_and_caps_the_rate_by_cpu() -> None:
    lam = cost_model.CLOUDS[0]
    fast = cost_model.Measured("fast", rate=10_000, cpu_per_million=100.0, relay=True)
    f = cost_model.per_million(fast, lam)
    # 100 CPU s per M events on ~0.58 vCPU caps the rate at 5,800 events/s
    assert f["rate"] == pytest.approx(lam.vcpu * 1e6 / 100.0)
    assert f["invocations"] == pytest.approx(1e6 / cost_model.SLICE_EVENTS)
    assert f["writes"] == pytest.approx(f["invocations"] * cost_model.STORE_WRITES_PER_SLICE)
    slow = cost_model.Measured("slow", rate=10, cpu_per_million=100.0, relay=True)
    # at 10 events/s a slice ends at the function's timeout, not at the event budget
    assert cost_model.per_million(slow, lam)["invocations"] == pytest.approx(1e6 / (10 * 890))
    doc = cost_model.render([fast, slow], "test")
    assert "| fast | 5,800 |" in doc
    assert "1B events, hours" in doc


def test_cost_model_has_the_fixed_monthly_costs_per_cloud_and_topology() -> None:
    """The costs that run without a single event: EP1's always-allocated instance, interface
    and private endpoints, the VPC connector's instances, NAT gateways and static IPs; the doc
    carries the generator's section as it is."""
    section = cost_model.fixed_section()
    items = {(f.cloud, f.topology): f for f in cost_model.FIXED}
    assert {c for c, _ in items} == {"AWS", "Google Cloud", "Azure"}
    for cloud in ("AWS", "Google Cloud", "Azure"):
        assert any(t in ("public",) for c, t in items if c == cloud), cloud
        assert any(t in ("peered", "both") for c, t in items if c == cloud), cloud
    ep1 = next(f for f in cost_model.FIXED if "EP1" in f.item)
    assert ep1.monthly > 100  # the largest fixed cost: one instance at all times
    doc = (Path(__file__).resolve().parents[2] / "docs" / "cost-model.md").read_text()
    assert "\n".join(section) in doc


def test_a_runners_peak_memory_is_its_own_not_its_parents(source: Emulator) -> None:
    """The kernel's `ru_maxrss` of a forked child starts at the parent's resident size: a
    bench process holding a large sample made every shard look as large (bench/processes.py).
    The runners report their own peak, which the measurement uses."""
    ballast = bytearray(400 * 2**20)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touched: resident, not just reserved
    with Emulator() as target:
        measured = run_measured(
            python_module(
                "bench.baselines",
                "--source", source.uri,
                "--target", target.uri,
                "--events", "50",
                "--seconds", "60",
            ),
            timeout=120,
        )  # fmt: skip
    del ballast
    assert 20 < measured.peak_rss_mib < 300, measured.peak_rss_mib

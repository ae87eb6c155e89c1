"""The capacity model (core/capacity.py): hours, K and dollars per cloud, and which bound
limits. Expected figures are computed here by hand from the price table's numbers, not by
calling the model a second way."""

from __future__ import annotations

import pytest

from core import capacity
from core.capacity import Capacity, ModeFigure, Question, choose, project
from core.capacity_prices import CLOUDS

AWS, GCP, AZURE = CLOUDS


def figure(rate: float = 1_000.0, cpu: float = 0.0, mode: str = "ordered") -> ModeFigure:
    return ModeFigure(
        label="test",
        mode=mode,  # type: ignore[arg-type]
        partitions=1 if mode == "ordered" else 8,
        write_path="append-records" if mode == "ordered" else "multi-append",
        events_per_second=rate,
        cpu_seconds_per_million=cpu,
    )


def ask(events: int, **kw) -> Question:
    return Question(events=events, figure=kw.pop("fig", figure()), **kw)


def test_dollars_and_hours_of_one_chain_from_the_price_table_by_hand() -> None:
    # 20M events at 1,000 events/s on Lambda: slices of 20,000 events (the budget; the
    # 900 s time-out would allow 890,000), so 1,000 invocations of 2 s start-up each.
    p = project(ask(20_000_000), AWS, 1)
    seconds = 20_000_000 / 1_000 + 1_000 * 2.0  # 22,000 s
    assert p.hours == pytest.approx(seconds / 3600)
    assert p.bound == "per-process rate"
    assert p.usage.invocations == pytest.approx(1_000)
    assert p.usage.store_reads == pytest.approx(4_000)
    assert p.usage.store_writes == pytest.approx(5_000)
    compute = (
        1_000 * 0.20 / 1e6  # invocations
        + 22_000 * 1.0 * 0.0000166667  # GB-seconds at 1 GB
        + 4_000 * 0.125 / 1e6  # DynamoDB reads
        + 5_000 * 0.625 / 1e6  # DynamoDB writes
    )
    fixed = 22_000 / 3600 * (4 * 0.01)  # the interface endpoints, peered (gateway: free)
    assert p.usd_compute == pytest.approx(compute)
    assert p.usd_fixed == pytest.approx(fixed)
    assert p.usd == pytest.approx(compute + fixed)


def test_azure_bills_vcpu_and_memory_seconds_and_counts_its_always_ready_instance_once() -> None:
    p = project(ask(20_000_000), AZURE, 1)
    seconds = 20_000_000 / 1_000 + 1_000 * 2.0
    compute = seconds * (3.5 * 0.0123 / 3600 + 1.0 * 0.173 / 3600) + 9_000 * 0.00036 / 1e4
    # fixed while copying: the private endpoints and DNS zones; the always-ready EP1
    # instance is the one running the chain, billed above
    fixed = seconds / 3600 * (5 * 0.01 + 5 * 0.50 / 730)
    assert p.usd_compute == pytest.approx(compute)
    assert p.usd_fixed == pytest.approx(fixed)


def test_the_function_cpu_share_caps_the_per_process_rate() -> None:
    # 200 CPU s per million events: a 0.58 vCPU Lambda copies at most 2,900 events/s, a
    # 1 vCPU Cloud Function 5,000; the measured 10,000 is the benchmark machine's
    q = ask(1_000_000, fig=figure(rate=10_000, cpu=200.0))
    assert project(q, AWS, 1).chain_rate == pytest.approx(2_900)
    assert project(q, GCP, 1).chain_rate == pytest.approx(5_000)


def test_hours_dollars_and_k_grow_with_the_store() -> None:
    sizes = [10_000_000, 100_000_000, 1_000_000_000, 10_000_000_000]
    for cloud in CLOUDS:
        one = [project(ask(n), cloud, 1) for n in sizes]
        chosen = [choose(ask(n), cloud) for n in sizes]
        assert [p.hours for p in one] == sorted(p.hours for p in one)
        assert len({p.hours for p in one}) == len(sizes)
        assert [p.usd for p in one] == sorted(p.usd for p in one)
        assert [p.shards for p in chosen] == sorted(p.shards for p in chosen)
        assert chosen[0].shards == 1 and chosen[-1].shards > 1


def test_k_is_the_least_that_finishes_within_the_target() -> None:
    # 1B events at 1,000 events/s per chain (+ 2 s per 20,000-event slice): 1.1 ms an
    # event, so 305.6 h for one chain; 24 h needs 305.6 / 24 = 12.7 -> 13 chains
    per_event = 1 / 1_000 + 2.0 / 20_000
    one_chain_hours = 1e9 * per_event / 3600
    p = choose(ask(1_000_000_000), AWS)
    assert p.shards == 13 and p.within_target
    assert p.hours == pytest.approx(one_chain_hours / 13)
    assert not project(ask(1_000_000_000), AWS, 12).within_target


def test_k_is_capped_by_max_shards_and_by_the_cloud() -> None:
    q = ask(10_000_000_000, max_shards=3)
    p = choose(q, AWS)
    assert p.shards == 3 and not p.within_target and p.bound == "per-process rate"
    assert "cannot finish within 24 h" in p.notes[0] and "max shards 3" in p.notes[0]
    # Azure: infra/azure's maximum_instances allows 20 chains at most, whatever max_shards
    p = choose(ask(10_000_000_000, max_shards=500), AZURE)
    assert p.shards == 20 and "maximum_instances" in p.notes[0]


def test_the_target_write_capacity_bounds_whatever_k() -> None:
    q = ask(1_000_000_000, target_write=capacity.target_capacity(rate=5_000))
    p = choose(q, AWS)
    assert p.bound == "target write capacity"
    assert p.hours == pytest.approx(1e9 / 5_000 / 3600)  # 55.6 h, not within 24 h
    # the least K that reaches the target's pace: 1,000 events/s a chain (less start-up)
    # needs 6 chains for 5,000 events/s; more chains only cost more
    assert p.shards == 6
    assert project(q, AWS, 5).bound == "per-process rate"
    # K chains slowed to the target's pace still bill their whole duration: 6 x 55.6 h
    assert p.usage.billed_seconds == pytest.approx(6 * 1e9 / 5_000)


def test_sharded_copies_scan_the_source_k_times() -> None:
    # 1B events in a log of 2B records; chains of 10,000 events/s (0.2 ms an event with
    # start-up: 200,000 s for one chain); the source scans 100,000 records/s for all
    # readers, and K shards each read all of $all through a filter: K x 2B records go by,
    # K x 20,000 s
    q = ask(
        1_000_000_000,
        fig=figure(rate=10_000),
        records=2_000_000_000,
        source_scan=Capacity(events_per_second=100_000, basis="test"),
    )
    four = project(q, GCP, 4)  # chains 50,000 s, scan 80,000 s
    assert four.bound == "source scan"
    assert four.hours == pytest.approx(80_000 / 3600)
    assert four.source_scan_needed == pytest.approx(4 * 2e9 / 80_000)
    eight = project(q, GCP, 8)  # twice the shards, twice the scan
    assert eight.hours == pytest.approx(160_000 / 3600)
    two = project(q, GCP, 2)  # chains 100,000 s, scan 40,000 s
    assert two.bound == "per-process rate" and two.hours == pytest.approx(100_000 / 3600)
    # the least K within 24 h (86,400 s): K = 3, chains 66,667 s, scan 60,000 s
    best = choose(q, GCP)
    assert best.shards == 3 and best.within_target and best.bound == "per-process rate"
    assert best.hours == pytest.approx(200_000 / 3 / 3600)


def test_source_scan_limits_when_no_k_finishes() -> None:
    # a slow source: 20,000 records/s for a log of 1B records; one chain needs 305.6 h, one
    # scan alone 13.9 h; with K shards the scan takes K x 13.9 h, the chains 305.6 / K h
    q = ask(1_000_000_000, source_scan=Capacity(events_per_second=20_000, basis="test"))
    best = choose(q, AWS)
    assert not best.within_target
    # the soonest of max(305.6 / K, 13.9 K): K = 4 gives 76.4 h (the chains), K = 5 69.4 h
    # (the scan), K = 6 83.3 h (the scan)
    per_event_hours = 1e9 * (1 / 1_000 + 2.0 / 20_000) / 3600
    scan_hours = 1e9 / 20_000 / 3600
    soonest = min(range(1, 65), key=lambda k: max(per_event_hours / k, k * scan_hours))
    assert best.shards == soonest == 5
    assert best.bound == "source scan"
    assert "scans $all faster" in best.notes[0]


def test_an_ordered_job_sharded_is_told_global_order_is_lost() -> None:
    big = choose(ask(1_000_000_000), AWS)
    assert big.shards > 1 and capacity.ORDER_CAVEAT in big.notes
    small = choose(ask(1_000_000), AWS)
    assert small.shards == 1 and capacity.ORDER_CAVEAT not in small.notes
    part = choose(ask(1_000_000_000, fig=figure(mode="partitioned")), AWS)
    assert part.shards > 1 and capacity.ORDER_CAVEAT not in part.notes


def test_target_sizes_come_from_the_seed_doc_or_the_user() -> None:
    c4 = capacity.target_capacity(size="c4")
    assert c4.events_per_second == 1_000 and "C4-sized" in c4.basis
    assert capacity.target_capacity(rate=7_000).basis.startswith("given")
    assert capacity.target_capacity().events_per_second is None
    with pytest.raises(ValueError, match="--target-write-rate"):
        capacity.target_capacity(size="M32")


def test_figures_pick_the_mode_and_write_path_and_say_when_another_stands_in() -> None:
    figures = capacity.Figures(
        measured_at="x",
        latency_ms=5,
        workload="w",
        machine="m",
        commit="c",
        modes=[
            figure(4_000),
            figure(2_000).model_copy(update={"write_path": "multi-append"}),
            figure(3_000, mode="partitioned"),
            figure(2_500, mode="partitioned").model_copy(update={"partitions": 64}),
        ],
    )
    got, note = figures.pick("ordered", 1, "multi-append")
    assert got.events_per_second == 2_000 and note is None
    got, note = figures.pick("ordered", 1, "per-stream")
    assert note and "not measured" in note and "may be lower" in note
    got, note = figures.pick("partitioned", 48, "multi-append")
    assert got.partitions == 64 and note and "nearest, 64" in note
    got, note = figures.pick("partitioned", 8, "multi-append")
    assert got.partitions == 8 and note is None


def test_the_committed_figures_are_the_benchmarks_and_cover_the_modes() -> None:
    figures = capacity.load_figures()
    paths = {(m.mode, m.write_path) for m in figures.modes}
    assert ("ordered", "append-records") in paths
    assert ("ordered", "multi-append") in paths
    assert any(mode == "partitioned" for mode, _ in paths)
    assert figures.latency_ms == 5

"""The benchmark's side of the capacity model: its rows become core/capacity_figures.json
(the write path each target offered), and it prints the 1B projection with K per cloud."""

from __future__ import annotations

from bench import cost_model
from bench.strategies import BASELINE_ORDERED, STRATEGIES
from core import capacity


def by_name(name: str):
    return next(s for s in STRATEGIES if s.name == name)


def test_rows_carry_the_write_path_their_target_offered() -> None:
    paths = {
        s.name: cost_model.measured_of(s, 1_000, 100).write_path
        for s in STRATEGIES
        if s.kind == "relay"
    }
    assert paths["ours, ordered"] == "per-stream"
    assert paths["ours, ordered + multi-append"] == "multi-append"
    assert paths["ours, ordered + AppendRecords"] == "append-records"
    assert paths["ours, partitioned 8"] == "multi-append"
    assert cost_model.measured_of(by_name("ours, partitioned 64"), 1, 1).partitions == 64


def test_figures_keep_our_relay_only_and_round_trip_through_the_file(tmp_path) -> None:
    measured = [
        cost_model.measured_of(BASELINE_ORDERED, 150, 1_600),
        cost_model.measured_of(by_name("ours, ordered + AppendRecords"), 4_321.27, 85.04),
        cost_model.measured_of(by_name("ours, partitioned 8"), 4_278, 103),
    ]
    figures = cost_model.figures_of(measured, 5.0, "random", "machine", "abc1234")
    assert figures is not None
    assert [m.label for m in figures.modes] == [
        "ours, ordered + AppendRecords",
        "ours, partitioned 8",
    ]
    path = tmp_path / "figures.json"
    cost_model.write_figures(figures, path)
    again = capacity.load_figures(path)
    assert again == figures
    assert again.modes[0].events_per_second == 4_321.3  # rounded to what matters
    assert cost_model.figures_of(measured[:1], 5.0, "w", "m", "c") is None


def test_the_projection_names_k_hours_dollars_and_the_bound_per_mode_and_cloud() -> None:
    figures = capacity.Figures(
        measured_at="now",
        latency_ms=5,
        workload="w",
        machine="m",
        commit="c",
        modes=[
            cost_model.measured_of(by_name("ours, ordered + AppendRecords"), 4_000, 90).figure(),
            cost_model.measured_of(by_name("ours, partitioned 8"), 4_000, 100).figure(),
        ],
    )
    lines = cost_model.projection_section(figures)
    assert lines[0].startswith("## Projection: 1B events within 24 hours")
    rows = [ln for ln in lines if ln.startswith("| ordered + AppendRecords |")]
    assert [r.split(" | ")[1] for r in rows] == ["aws", "gcp", "azure"]
    # 0.25 ms an event at 4,000 events/s, and 2 s per 20,000-event slice: 0.35 ms, so 97.2 h
    # for one chain; within 24 h needs 97.2 / 24 = 4.05 -> K = 5
    assert all(r.split(" | ")[3] == "97.2" for r in rows)
    assert all(r.split(" | ")[4] == "5" and "per-process rate" in r for r in rows)
    text = "\n".join(lines)
    assert "does not keep the global order across shards" in text
    assert "| 100M |" in text and "| 1,000M |" in text and "| 10,000M |" in text

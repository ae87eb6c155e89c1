"""The shards bench's verdicts (bench/shards_bench.py `report`): the CPU goal is judged after
start-up, on the shards run at once and, when measured, one after another (each process
alone, as on K machines), on the medians of the rounds; a miss in either shows."""

from __future__ import annotations

from bench.shards_bench import Result, report
from bench.workloads import BenchWorkload

WORKLOAD = BenchWorkload(shape="skewed", events=120_000, streams=6_000)


def _result(shards: int, sequential: bool, cpu: float, running: float) -> Result:
    """A result whose CPU per million events is `cpu` with start-up, `running` without."""
    events = 120_000
    per = [events // shards] * shards
    start = (cpu - running) * events / 1e6
    return Result(shards, sequential, events, 10.0, cpu * events / 1e6, start, per, 1.0, 0, 90.0)


def test_the_cpu_goal_is_judged_at_once_and_alone_after_start_up() -> None:
    results = [_result(1, False, 63, 59), _result(4, False, 95, 76), _result(4, True, 81, 64)]
    text = report(WORKLOAD, results, 5.0, "ordered", "26.1")
    assert "K=4 at once: CPU per event after start-up 1.29x K=1 (MISSED: <= 1.15x)" in text
    assert "with the 4 start-ups 1.51x" in text
    assert "K=4 one after another: CPU per event after start-up 1.08x K=1 (met: <= 1.15x)" in text
    assert "largest shard 1.00x the mean (met: <= 1.5x); copied correctly: yes" in text


def test_without_the_run_one_after_another_only_the_run_at_once_is_judged() -> None:
    results = [_result(1, False, 63, 59), _result(4, False, 70, 66)]
    text = report(WORKLOAD, results, 5.0, "ordered", "26.1")
    assert "K=4 at once: CPU per event after start-up 1.12x K=1 (met: <= 1.15x)" in text
    assert "one after another" not in text


def test_the_cpu_goal_is_judged_on_the_medians_of_the_rounds() -> None:
    one, at_once = _result(1, False, 63, 59), _result(4, False, 95, 76)
    one.more_cpu_runs += [(60.0, 55.0), (65.0, 60.0)]  # K=1 after start-up: 59, 55, 60
    at_once.more_cpu_runs += [(70.0, 62.0), (72.0, 64.0)]  # 76, 62, 64
    text = report(WORKLOAD, [one, at_once], 5.0, "ordered", "26.1")
    # medians 64 / 59: met, although the first round alone (76 / 59) missed
    assert "K=4 at once: CPU per event after start-up 1.08x K=1 (met: <= 1.15x)" in text
    assert "| 76, 62, 64 |" in text
    at_once.more_cpu_runs[:] = [(95.0, 80.0), (90.0, 70.0)]  # 76, 80, 70: median 76
    text = report(WORKLOAD, [one, at_once], 5.0, "ordered", "26.1")
    assert "K=4 at once: CPU per event after start-up 1.29x K=1 (MISSED: <= 1.15x)" in text

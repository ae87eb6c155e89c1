"""The kill soak, short: SIGKILLs of a real relay process at seeded random points, source
writes between runs, then target == filtered source by tests/oracle.py with 0 differences,
duplicates and gaps, and verify agreeing. The chain one copies data migrated before (A -> B ->
C, metadata already holding `$original*` / `$schema.*` keys), also into a 26.1 target
(AppendRecords). The partitioned one (8 kills, 8
writers) and the long ones (200 kills each) run with `make soak`."""

from __future__ import annotations

import pytest

from tests.reliability.soak import run_soak


def test_kill_soak_short_ordered():
    report = run_soak(15, seed=11)
    print(report)
    assert report.kills == 15
    assert report.step_kills and report.timer_kills  # both ways of killing were exercised
    assert report.events_checked > 2000
    assert (report.differences, report.duplicates, report.missing) == (0, 0, 0)
    assert not report.out_of_order
    assert report.checkpoint_regressions == 0
    assert report.clean and report.verify_agrees


def test_kill_soak_short_chain():
    report = run_soak(12, seed=13, chain=True, events=900)
    print(report)
    assert report.kills == 12
    assert report.events_checked > 700
    assert report.clean, report
    assert report.verify_agrees and report.verify_differences == 0


def test_kill_soak_short_chain_append_records():
    """Ordered mode through KurrentDB 26.1's AppendRecords (the target emulator as 26.1)."""
    report = run_soak(12, seed=14, chain=True, events=900, target_version="26.1")
    print(report)
    assert report.kills == 12
    assert report.events_checked > 700
    assert report.clean, report
    assert report.verify_agrees and report.verify_differences == 0


@pytest.mark.soak
def test_kill_soak_short_partitioned():
    report = run_soak(8, seed=12, mode="partitioned", partitions=8)
    print(report)
    assert report.kills == 8
    assert report.events_checked > 2000
    assert (report.differences, report.duplicates, report.missing) == (0, 0, 0)
    assert report.checkpoint_regressions == 0
    assert report.clean and report.verify_agrees


def test_kill_soak_short_shards():
    """K = 4 shards as 4 processes at once, each killed on its own, a writer appending to the
    source while they run (the long one, 200 kills: `make soak`)."""
    report = run_soak(12, seed=15, shards=4, events=1200)
    print(report)
    assert report.kills >= 12
    assert report.concurrent_writes > 0
    assert report.events_checked > 1000
    assert (report.differences, report.duplicates, report.missing, report.extra) == (0, 0, 0, 0)
    assert report.checkpoint_regressions == 0
    assert report.clean and report.verify_agrees

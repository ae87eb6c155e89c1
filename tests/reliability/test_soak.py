"""The kill soak, short: 15 SIGKILLs of a real relay process at seeded random points, source
writes between runs, then target == filtered source with 0 differences, duplicates and gaps.
The partitioned one (8 kills, 8 writers) and the long ones (200 kills each) run with
`make soak`."""

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


@pytest.mark.soak
def test_kill_soak_short_partitioned():
    report = run_soak(8, seed=12, mode="partitioned", partitions=8)
    print(report)
    assert report.kills == 8
    assert report.events_checked > 2000
    assert (report.differences, report.duplicates, report.missing) == (0, 0, 0)
    assert report.checkpoint_regressions == 0

"""Property-based tests of ordered mode writing through KurrentDB 26.1's AppendRecords: the
random histories, settings, faults (UNAVAILABLE in AppendRecords too) and checks of
test_properties.py, against a target emulator started as 26.1. Each batch's records of any
streams go in `$all` order in one atomic append: the oracle (tests/oracle.py) checks that the
target's `$all` keeps the source's order, that metadata a v2 append stores is the same value
(docs/multi-append.md), and that verify agrees.
"""

from __future__ import annotations

from hypothesis import given

from tests.engine.test_properties import PROPERTY_SETTINGS, Case, cases, run_case


@PROPERTY_SETTINGS
@given(case=cases)
def test_target_equals_filtered_source_with_append_records(tmp_path_factory, case: Case):
    run_case(
        tmp_path_factory.mktemp("append-records"), case, target_version="26.1", multi_append=True
    )

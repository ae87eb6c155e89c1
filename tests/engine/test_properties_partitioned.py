"""Property-based tests of run_slice in partitioned mode: the random histories, job settings,
target faults and checks of test_properties.py (the oracle of tests/oracle.py, verify agreeing
with it), replicated by 2-8 writer threads, with and without multi-stream appends.

Partitioned mode does not keep the global order: the oracle checks instead that every
replicated event is on the target exactly once and each stream's events are in the source's
order (its reader's view).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.engine.test_properties import PROPERTY_SETTINGS, Case, cases, run_case


@PROPERTY_SETTINGS
@given(case=cases, partitions=st.integers(2, 8), multi_append=st.booleans())
def test_target_equals_filtered_source_in_partitioned_mode(
    tmp_path_factory, case: Case, partitions: int, multi_append: bool
):
    run_case(
        tmp_path_factory.mktemp("partitioned"),
        case,
        mode="partitioned",
        partitions=partitions,
        multi_append=multi_append,
    )

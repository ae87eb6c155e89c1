"""Property-based tests of ordered mode writing through KurrentDB's multi-stream append: the
random histories, settings, faults (UNAVAILABLE in the multi-stream appends too) and checks of
test_properties.py. The server stores a v2 append's metadata as properties and shows it back
as JSON with `$schema.name` / `$schema.format` added: the oracle (tests/oracle.py) accepts such
metadata by value, and only for events whose value a v2 append keeps (docs/multi-append.md);
the `$all` order is kept.
"""

from __future__ import annotations

from hypothesis import given

from tests.engine.test_properties import PROPERTY_SETTINGS, Case, cases, run_case


@PROPERTY_SETTINGS
@given(case=cases)
def test_target_equals_filtered_source_with_multi_append(tmp_path_factory, case: Case):
    run_case(tmp_path_factory.mktemp("multi-append"), case, multi_append=True)

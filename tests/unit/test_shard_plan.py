"""The shard planner (core/shards.py): balance from the data, names split exactly once, regexes
that mean what they list. Membership over generated names is a property test
(tests/engine); here the planner's choices on the histories users have."""

from __future__ import annotations

import random
import re
import uuid

import pytest

from core.shards import GOOD_BALANCE, plan_shards, suffix_of


def _zipf_counts(
    streams: int, seed: int, name=lambda r: f"order-{uuid.UUID(int=r.getrandbits(128))}"
):
    rng = random.Random(seed)
    return {name(rng): max(1, int(10_000 / (rank + 1) ** 1.1)) for rank in range(streams)}


def _largest_over_mean(plan, counts) -> float:
    """Recomputed from the regexes alone (the truth the server applies), not from the plan's
    own expectation."""
    per_shard = [0] * plan.count
    for stream, n in counts.items():
        (only,) = [i for i, r in enumerate(plan.regexes) if re.search(r, stream)]
        per_shard[only] += n
    return max(per_shard) / (sum(per_shard) / plan.count)


@pytest.mark.parametrize("k", [2, 4, 8])
def test_a_skewed_history_of_uuid_streams_is_split_within_the_target(k: int) -> None:
    counts = _zipf_counts(20_000, seed=k)
    plan = plan_shards(counts, k, exact=True)
    assert _largest_over_mean(plan, counts) <= 1.5
    assert plan.balance == pytest.approx(_largest_over_mean(plan, counts))


def test_sequential_numeric_ids_and_metadata_streams_balance() -> None:
    counts = {f"account-{i:06d}": 1 + (i % 13) for i in range(5_000)}
    counts |= {f"$$account-{i:06d}": 1 for i in range(0, 5_000, 10)}
    # ten last digits cannot be split evenly in four (3/2.5 = 1.2): two digits are needed
    plan = plan_shards(counts, 4, exact=True)
    assert _largest_over_mean(plan, counts) <= GOOD_BALANCE
    assert plan.suffix_length == 2
    # ... but they can in five: the shortest length that is even enough is kept
    plan = plan_shards(counts, 5, exact=True)
    assert _largest_over_mean(plan, counts) <= GOOD_BALANCE
    assert plan.suffix_length == 1


def test_a_stream_larger_than_a_shard_is_reported_not_hidden() -> None:
    counts = {"hot": 30_000} | {f"cold-{i}": 1 for i in range(10_000)}
    plan = plan_shards(counts, 4, exact=True)
    assert plan.balance >= 30_000 / (40_000 / 4) - 1e-9  # one stream cannot be split
    assert _largest_over_mean(plan, counts) == pytest.approx(plan.balance)


def test_every_name_lands_in_exactly_one_shard_and_metadata_with_its_stream() -> None:
    counts = _zipf_counts(3_000, seed=1)
    plan = plan_shards(counts, 5, exact=False)
    odd = ["a", "", "$$a", "é", "x\nab", "ab\n", "order-1\n", "$$$stats", "a.b", "a+b", "a#b/c"]
    for stream in [*list(counts)[:500], *odd]:
        assert len(plan.matching(stream)) == 1, stream
        assert plan.matching("$$" + stream) == plan.matching(stream), stream


def test_suffixes_are_matched_literally() -> None:
    counts = {"x.b": 100, "x+b": 100, "xa-b": 100, "y": 1}
    plan = plan_shards(counts, 3, exact=True)
    # the dot of "x.b"'s suffix must not match any character
    assert plan.shard_of("q.b") != plan.shard_of("qzb") or plan.shard_of("q.b") == plan.count - 1
    for stream in counts:
        assert len(plan.matching(stream)) == 1


def test_suffix_characters() -> None:
    assert suffix_of("order-12", 2) == "12"
    assert suffix_of("a", 2) is None  # too short: the last shard's
    assert suffix_of("ab$", 1) is None  # `$` never in a suffix: `$$ab$` ends the same way
    assert suffix_of("aé", 1) is None


def test_the_plan_is_deterministic() -> None:
    counts = _zipf_counts(2_000, seed=9)
    first = plan_shards(counts, 4, exact=True)
    again = plan_shards(dict(reversed(list(counts.items()))), 4, exact=True)
    assert (first.regexes, first.expected_events) == (again.regexes, again.expected_events)


def test_shard_count_is_bounded() -> None:
    with pytest.raises(ValueError, match="2-64"):
        plan_shards({"a": 1}, 1, exact=True)
    with pytest.raises(ValueError, match="2-64"):
        plan_shards({"a": 1}, 65, exact=True)

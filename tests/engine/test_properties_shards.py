"""Property-based tests of sharded jobs.

- Membership: for plans made from random, skewed counts of random names, every name —
  unicode, newlines (also at the end, where a regex's `$` matches too), `$`/`$$` prefixes,
  empty or one character, regex metacharacters — passes exactly one shard's regex, and a
  metadata stream `$$name` the same shard as `name` (its metadata is applied in order with
  its events).
- Copying: the random histories, job settings and target faults of test_properties.py,
  replicated by K = 2-4 shards, each its own chain of slices (turns in a random order, as K
  processes would interleave), in ordered or partitioned mode: the oracle of tests/oracle.py
  finds the target exact (per-stream order: no order across shards is promised) and verify
  agrees with it.
"""

from __future__ import annotations

import dataclasses
import random
import time

from hypothesis import given
from hypothesis import strategies as st

from core.checkpoint import open_store
from core.config import JobConfig
from core.engine import Budget, run_slice
from core.errors import RelayError
from core.eventstore import EventStore
from core.rules import load_transform
from core.shard_plans import fix_plan
from core.shards import plan_shards
from esdb_emulator import Emulator
from tests.engine.test_properties import (
    PROPERTY_SETTINGS,
    Case,
    apply_history,
    cases,
    check,
    job_for,
    oracle_job,
)

_chars = st.characters(blacklist_categories=("Cs",))
_tricky = st.sampled_from(
    ["", "\n", "$", "$$", ".", "*", "(", ")", "[", "]", "|", "^", "\\", "+", "?", "{", "}", "-"]
)
names = st.one_of(
    st.text(_chars, max_size=12),
    st.builds(lambda a, b, c: a + b + c, _tricky, st.text(_chars, max_size=6), _tricky),
    st.builds(lambda n: f"order-{n:06d}", st.integers(0, 10**6)),
    st.builds(lambda h: f"ünï.strm-{h:04x}", st.integers(0, 0xFFFF)),
)
# Skewed: most streams small, a few hot.
skewed = st.one_of(st.integers(1, 5), st.integers(1, 5), st.integers(100, 10_000))


@PROPERTY_SETTINGS
@given(
    counts=st.dictionaries(names, skewed, min_size=0, max_size=60),
    probes=st.lists(names, max_size=40),
    count=st.integers(2, 8),
)
def test_every_name_passes_exactly_one_shard(counts, probes, count):
    plan = plan_shards(counts, count, exact=True)
    for name in [*counts, *probes]:
        for candidate in (name, "$$" + name, name + "\n", "$$" + name + "\n"):
            assert len(plan.matching(candidate)) == 1, (candidate, plan.regexes)
        assert plan.shard_of("$$" + name) == plan.shard_of(name), (name, plan.regexes)
    assert sum(plan.expected_events) == sum(counts.values())


@PROPERTY_SETTINGS
@given(case=cases, shards=st.integers(2, 4), partitioned=st.booleans())
def test_shards_together_copy_the_source(tmp_path_factory, case: Case, shards, partitioned):
    settings: dict[str, object] = {"shards": shards}
    if partitioned:
        settings.update(mode="partitioned", partitions=3)
    workdir = tmp_path_factory.mktemp("shards")
    with Emulator() as source, Emulator() as target:
        history = apply_history(source.store, case)
        job = job_for(source, target, workdir, case, history, **settings)
        replicate_shards(job, target, case)
        # Each stream's order only: no order across shards is promised.
        expected = dataclasses.replace(oracle_job(case, history, **settings), ordered=False)
        check(source, target, job, case, history, expected)


def replicate_shards(job: JobConfig, target: Emulator, case: Case) -> None:
    store = open_store(job.checkpoint_store)
    transform = load_transform(job.transform)
    rng = random.Random(case.seed)
    target.faults.update(
        unavailable_rate=case.unavailable_rate,
        methods={"BatchAppend", "AppendSession", "AppendRecords"},
        seed=case.seed,
    )
    try:
        with (
            EventStore(job.source.get_secret_value(), side="source") as s,
            EventStore(job.target.get_secret_value(), side="target") as t,
        ):
            plan = fix_plan(store, job.job_id, job.shards, s, "test")
            pending = set(range(plan.count))
            for _ in range(400 * plan.count):
                if not pending:
                    return
                index = rng.choice(sorted(pending))
                budget = Budget(case.max_events, 10**9, time.monotonic() + 60)
                try:
                    result = run_slice(
                        job,
                        s,
                        t,
                        store,
                        budget,
                        transform=transform,
                        shard=plan.shard(job.job_id, index),
                    )
                except RelayError:
                    continue  # a failed slice commits nothing; the next one resumes
                if result.caught_up:
                    pending.discard(index)
    finally:
        target.faults.reset()
        store.close()
    raise AssertionError(f"shards {sorted(pending)} did not catch up")

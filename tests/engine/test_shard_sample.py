"""A sharded job's sample of the source (core/shards.py `sample_counts`): the first and the
last `limit` records of `$all`, the last read backwards in pages, so no one call has to carry
the whole tail within its deadline (a 100,000-record tail under load outlasted it).

The oracle is the emulator's own log (`Store.iter_all`), not the relay's reads."""

from __future__ import annotations

from collections import Counter

import pytest

import core.shards
from core.eventstore import EventStore
from core.shards import sample_counts
from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate


class _Counting:
    """The source, with the size of every backwards read it is asked for."""

    def __init__(self, source: EventStore) -> None:
        self.source = source
        self.backwards: list[int] = []

    def read_all_after(self, position, limit):
        return self.source.read_all_after(position, limit)

    def read_all_backwards(self, before, limit):
        self.backwards.append(limit)
        return self.source.read_all_backwards(before, limit)


@pytest.mark.parametrize(("events", "limit"), [(400, 60), (100, 60), (90, 45)])
def test_the_sample_is_the_first_and_last_records_read_in_pages(monkeypatch, events, limit):
    monkeypatch.setattr(core.shards, "SAMPLE_PAGE", 7, raising=False)
    with Emulator() as emulator:
        generate(emulator.store, Workload(events=events, streams=13, seed=events))
        log = [r.stream for r in emulator.store.iter_all()]
        with EventStore(emulator.uri, side="source") as source:
            reads = _Counting(source)
            counts, exact = sample_counts(reads, limit)
    whole = len(log) <= 2 * limit
    expected = Counter(log) if whole else Counter(log[:limit]) + Counter(log[-limit:])
    assert counts == dict(expected)
    assert exact == whole
    assert reads.backwards and max(reads.backwards) <= 7

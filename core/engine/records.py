"""Ordered mode through KurrentDB 26.1's AppendRecords: a batch of `record_batches` (records of
several streams, interleaved as in the source's `$all`) goes in one atomic append that keeps
that order in the target's `$all`, each stream's exact expected revision sent as a consistency
check.

What it keeps is what `StreamWriter` keeps (core/engine/slice.py, docs/reliability.md): a
stream's state is learned (or assumed, at its revision 0) as for any append, and each record
at or before a stream's marker is dropped before the call; the server writes every record or
none. A refused check names every failing stream: those are learned again (once each) and the
batch retried without what is already there (a replay after a crash, a batch an invocation
fenced out wrote); a stream refused twice is a ConflictError, as for a single append. A batch
over the server's size limit is split into halves in `$all` order; one op alone goes by the
v1 append, which drops the provenance keys or dead-letters as before. A batch of one stream
goes by the v1 append too; an event the v2 API cannot carry goes alone by the v1 append, byte
for byte, between AppendRecords calls for the rest; a server that refuses the call gets the
batch run by run. While a call is in flight the next batch's request is built (one call on
the wire, one being built; never two calls in flight).
"""

from __future__ import annotations

from collections import Counter

from core.engine.batching import by_run
from core.engine.budget import Step
from core.engine.plan import EventOp, Op, SkipOp
from core.engine.writer import StreamWriter, TargetStream, WriteContext
from core.errors import (
    AppendTooLarge,
    ConflictError,
    MultiAppendConflict,
    MultiAppendUnsupported,
    StreamTombstoned,
)
from core.eventstore.multi import PreparedRecords
from core.eventstore.v2 import event_problem
from core.model import NO_STREAM


class RecordsWriter(StreamWriter):
    def __init__(self, ctx: WriteContext) -> None:
        super().__init__(ctx)
        # The next batch's request, built while this one was in flight: (its ops, their
        # expected revisions, the request), used only if both are still what they would be.
        self._prebuilt: tuple[tuple[int, ...], dict[str, int], PreparedRecords] | None = None

    def write_records(self, group: list[Op], following: list[Op] | None = None) -> tuple[int, int]:
        """Write a group from `record_batches`; (events written, bytes written). While its
        append is in flight, the request of `following` (the next group) is built, assuming
        this one lands: a pipeline of one call on the wire and one being built, never two
        calls in flight (a batch must not land before the one before it has)."""
        if not all(isinstance(op, EventOp | SkipOp) for op in group):
            return self.write(group)  # a barrier: metadata or a tombstone, alone
        ops = _events(group)
        if not ops:
            return 0, 0
        return self._records(ops, frozenset(), following)

    def _plan(
        self, ops: list[Op], states: dict[str, TargetStream]
    ) -> tuple[list[Op], dict[str, int]]:
        pending: list[Op] = []
        for op in ops:
            state = states.get(op.stream)
            if state is None:
                state = states[op.stream] = self.state(op.stream, op)
            if op.position > state.marker:
                pending.append(op)
        expected = {op.stream: states[op.stream].revision for op in pending}
        return pending, expected

    def _records(
        self, ops: list[Op], resynced: frozenset[str], following: list[Op] | None = None
    ) -> tuple[int, int]:
        states: dict[str, TargetStream] = {}
        pending, expected = self._plan(ops, states)
        streams = list(expected)
        if len(streams) <= 1:
            return self._append(streams[0], pending) if streams else (0, 0)
        records = [(op.stream, event) for op in pending for event in op.events]
        try:
            prepared = self._take_prebuilt(pending, expected) or self.target.prepare_records(
                records, expected
            )
            if following is not None:
                # An assumed stream's answer is told by the head read before it: read it
                # before this call, not while it is in flight (`WriteContext.wrote_nothing`).
                self.ctx.note_head()
            self.ctx.on_step(Step.APPEND)
            answer = self.target.start_records(prepared)
            if following is not None:
                self._prebuild(following, pending, states)
            position = answer()
        except (MultiAppendConflict, StreamTombstoned) as e:
            # As a single append's resync (core/engine/writer.py), once per stream: learn the
            # named streams again, drop what is already there, retry the rest.
            actual = e.streams if isinstance(e, MultiAppendConflict) else {e.stream or "": None}
            named = [s for s in actual if s in expected]
            again = [s for s in named if s in resynced]
            if not named or again:
                stream = (again or streams)[0]
                raise ConflictError(stream, expected.get(stream), actual.get(stream)) from None
            for stream in named:
                if expected[stream] == NO_STREAM:
                    self.ctx.ahead = True  # a stream taken to be new is there: a replay
                self.sync(stream)
            return self._records(pending, resynced | set(named))
        except AppendTooLarge:
            if len(pending) == 1:
                return self._append(pending[0].stream, pending)
            half = len(pending) // 2
            n1, b1 = self._records(pending[:half], resynced)
            n2, b2 = self._records(pending[half:], resynced)
            return n1 + n2, b1 + b2
        except MultiAppendUnsupported:
            return self._apart(pending, resynced)
        counts = Counter(stream for stream, _ in records)
        for op in pending:
            states[op.stream].marker = op.position
        for stream in streams:
            state = states[stream]
            state.revision = (state.revision if state.revision >= 0 else -1) + counts[stream]
            state.exact = True  # what was just appended is the stream's end
        if self.ctx.wrote_nothing(position):
            for stream in streams:
                states[stream].exact = False  # the stream may go further: not for the cache
            return 0, 0
        return len(records), sum(event.size for _, event in records)

    def _prebuild(
        self, group: list[Op], previous: list[Op], states: dict[str, TargetStream]
    ) -> None:
        """Build the request of the next group as it will be if `previous` lands: its streams
        at the revisions that append leaves them at, the others as learned (reads, or
        assumed, as for any batch: nothing is written). Any problem leaves it to be built
        when its turn comes, in order."""
        self._prebuilt = None
        if not all(isinstance(op, EventOp | SkipOp) for op in group):
            return
        counts = Counter(op.stream for op in previous for _ in op.events)
        predicted = {
            stream: TargetStream(
                (state.revision if state.revision >= 0 else -1) + counts[stream], state.marker
            )
            for stream, state in states.items()
            if counts[stream]
        }
        try:
            pending, expected = self._plan(_events(group), predicted)
            if len(expected) <= 1:
                return
            records = [(op.stream, event) for op in pending for event in op.events]
            prepared = self.target.prepare_records(records, expected)
        except Exception:  # sync failures, events the v2 API cannot carry, ...
            # Only an optimisation, while a call is in flight that must be answered: the
            # group meets the same problem, in order, when it is written.
            return
        self._prebuilt = (tuple(map(id, pending)), expected, prepared)

    def _take_prebuilt(self, pending: list[Op], expected: dict[str, int]) -> PreparedRecords | None:
        built, self._prebuilt = self._prebuilt, None
        if built and built[0] == tuple(map(id, pending)) and built[1] == expected:
            return built[2]
        return None

    def _apart(self, ops: list[Op], resynced: frozenset[str]) -> tuple[int, int]:
        """The batch could not go as one call. Its ops with events the v2 API cannot carry
        (metadata that is not a JSON object, ...) go alone by the v1 append, byte for byte,
        and the stretches between them by AppendRecords, in order; without such ops (the
        server refused the call) the batch is written run by run."""
        odd = [i for i, op in enumerate(ops) if any(event_problem(e) for e in op.events)]
        if not odd:
            return self._by_runs(ops)
        written = size = start = 0
        for i in [*odd, len(ops)]:
            parts = [self._records(ops[start:i], resynced)] if i > start else []
            if i < len(ops):
                parts.append(self._append(ops[i].stream, [ops[i]]))
            for n, b in parts:
                written += n
                size += b
            start = i + 1
        return written, size

    def _by_runs(self, ops: list[Op]) -> tuple[int, int]:
        written = size = 0
        for stream, run in by_run(ops):
            n, b = self._append(stream, run)
            written += n
            size += b
        return written, size


def _events(group: list[Op]) -> list[Op]:
    return [op for op in group if isinstance(op, EventOp) and op.events]

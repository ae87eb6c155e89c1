"""Ordered mode: every write in `$all` order. By what the target offers (and the job allows:
`multi_append`):
- KurrentDB 26.1's AppendRecords: one atomic append per batch of records of any streams in any
  interleaving, which keeps their order in `$all` (core/engine/records.py);
- 25.1's multi-stream append (AppendSession): one atomic append per batch of several streams'
  runs, a stream that comes back ending the batch;
- older servers: one append per run of one stream's events."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from core.engine.batching import ordered_batches, record_batches, runs
from core.engine.budget import Step
from core.engine.plan import Op
from core.engine.reader import ChunkReader
from core.engine.records import RecordsWriter
from core.engine.slice import Slice, at
from core.engine.writer import StreamWriter
from core.errors import PermanentError

# A chunk's new target streams are learned with this many reads at once.
SYNC_THREADS = 16


class OrderedSlice(Slice):
    def write_all(self, reader: ChunkReader, after: int | None) -> tuple[int | None, bool]:
        ctx = self.ctx
        multi = self.use_multi_append()
        write: Callable[[list[Op], list[Op] | None], tuple[int, int]]
        if multi and ctx.target.supports_append_records():
            writer: StreamWriter = (records := RecordsWriter(ctx))
            batches, write = record_batches, records.write_records
        elif multi:
            writer = StreamWriter(ctx)
            batches, write = ordered_batches, lambda group, _: writer.write_batch(group)
        else:
            writer = StreamWriter(ctx)
            batches, write = runs, lambda group, _: writer.write(group)
        self.writers.append(writer)
        batch = ctx.job.batch
        done = after
        first = True
        with ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="relay-sync") as pool:
            while True:
                ops = reader.next_ops()
                if first:
                    ctx.on_step(Step.READ)
                    first = False
                if ops is None:
                    return done, False
                writer.prefetch(ops, pool)
                groups = list(batches(ops, batch.max_events, batch.max_bytes))
                for i, group in enumerate(groups):
                    if self.budget.expired():
                        return done, True
                    self.check_lease()
                    following = groups[i + 1] if i + 1 < len(groups) else None
                    try:
                        n, b = write(group, following)
                    except PermanentError as e:
                        raise at(e, group[0].source) from None
                    ctx.on_step(Step.WRITTEN)
                    self.count(group, n, b)
                    done = group[-1].position

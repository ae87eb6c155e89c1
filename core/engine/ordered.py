"""Ordered mode: every write in `$all` order, one append per run of one stream's events or,
with KurrentDB's multi-stream append, one atomic append per batch of several streams' runs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from core.engine.batching import ordered_batches, runs
from core.engine.budget import Step
from core.engine.reader import ChunkReader
from core.engine.slice import Slice, at
from core.engine.writer import StreamWriter
from core.errors import PermanentError

# A chunk's new target streams are learned with this many reads at once.
SYNC_THREADS = 16


class OrderedSlice(Slice):
    def write_all(self, reader: ChunkReader, after: int | None) -> tuple[int | None, bool]:
        ctx = self.ctx
        writer = StreamWriter(ctx)
        self.writers.append(writer)
        multi = self.use_multi_append()
        batches = ordered_batches if multi else runs
        write = writer.write_batch if multi else writer.write
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
                for group in batches(ops, batch.max_events, batch.max_bytes):
                    if self.budget.expired():
                        return done, True
                    self.check_lease()
                    try:
                        n, b = write(group)
                    except PermanentError as e:
                        raise at(e, group[0].source) from None
                    ctx.on_step(Step.WRITTEN)
                    self.count(group, n, b)
                    done = group[-1].position

"""The engine: one invocation's work, `run_slice` (core/engine/slice.py).

- slice.py: run_slice, the ordered and partitioned drivers, the commit;
- plan.py: what each `$all` record becomes (typed ops), the slice's index;
- reader.py: the reader thread that reads and plans the next chunk while one is written;
- writer.py: per-stream writes with exact expected revisions, resyncs, oversize splits;
- batching.py: how ops are grouped into appends; watermark.py: partitioned mode's commit;
- locate.py: where a target stream's last event came from (the exactly-once argument);
- truncation.py: `$tb` in target revisions; known_streams.py: what a process learned.
"""

from core.engine.slice import Budget, SliceResult, run_slice

__all__ = ["Budget", "SliceResult", "run_slice"]

"""The engine: one invocation's work, `run_slice` (core/engine/slice.py).

- run.py: run_slice; slice.py: a slice (read, write, commit), ordered.py and partitioned.py
  its two modes;
- plan.py: what each `$all` record becomes (typed ops), the slice's index;
- reader.py: the reader thread that reads and plans the next chunk while one is written;
- writer.py: per-stream writes with exact expected revisions, resyncs, oversize splits;
- batching.py: how ops are grouped into appends; watermark.py: partitioned mode's commit;
- locate.py: where a target stream's last event came from (the exactly-once argument);
- truncation.py: `$tb` in target revisions; known_streams.py: what a process learned.
"""

from core.engine.budget import Budget
from core.engine.run import run_slice
from core.engine.slice import SliceResult

__all__ = ["Budget", "SliceResult", "run_slice"]

"""verify: prove the target holds exactly what the (filtered) source holds, stream by stream.

What is compared, per user stream the job's stream filters accept:
- state: tombstoned / soft-deleted (`$tb` = long.MaxValue) / live, on both sides;
- the visible events, in order: event id, type, content type, a sha256 of the data and the
  metadata, which must be byte-equal to what the relay writes: the user's bytes, with the
  `$original*` keys inserted when `job.original_metadata` is on and the user's metadata holds
  none (or without them, for an event they would have made too big for the target). The
  expected target events are derived from the source's visible events as the engine derives
  them: system/link events skipped, event-type filters applied, then the job's transform (if
  any) applied. With `multi_append`, metadata a v2 append may have stored as properties is
  also accepted by value (see v2_value_digest): that API cannot keep the bytes;
- the effective stream metadata (`$maxCount`, `$maxAge`, `$acl`, custom keys…), except `$tb`:
  `$tb` names source revisions on the source and translated revisions on the target, so it is
  compared by its effect — the visible events, which are compared anyway;
- with no sample: streams on the target that are not in the filtered source ("extra").

Streams are discovered by scanning the source's `$all` (user events, `$metadata` of user
streams, tombstones; see rules.classify). Only the set of stream names is kept; events are read
one stream at a time, page by page, and compared in lock step, holding one page per side. Only
when a stream diverges are the rest of its events held, as small fingerprints, to classify the
differences (missing, extra, different, out of order).

Where a stream read on the source cannot show everything the target legitimately shows, the
extra target events are counted as `events_unverified` with a note rather than reported:
- `$maxAge`: the target's copies are younger than the source's events, so the target still
  shows events the source already hides by age;
- a `$maxCount` window holding records the relay does not copy (links, system events, event
  types the filters skip), or a job with a transform: the source counts records the target
  does not have (or one event where the transform made several), so the target's window
  reaches further back than the source's.
In both cases only target events *before* the first expected event are tolerated.

The scavenge filter needs no special case: it drops only events a stream read of the source
does not show (deleted streams, before `$tb`, beyond `$maxCount`, past `$maxAge`), and deletes
and stream metadata are still copied.

Verify is meant for a quiet source (after catch-up, at cutover): events the source receives
while verify runs and the relay has not copied yet show up as differences.

Resumable: with `state=FILE` the list of streams to check and the results so far are saved to
FILE (after the scan, every `save_every` seconds, and when the run is interrupted by any
exception, Ctrl-C included); a later run with the same FILE skips the scan and the streams
already checked. Streams are merged in order, so the saved progress is a prefix of the list
and the finished report equals an uninterrupted run's (its time is the sum of the runs'). The
file is deleted once the report is complete.

Rooms: run.py (the run, discovery, resume), streams.py (one stream's comparison), prints.py
(what is compared of an event, and the forms its metadata may take), report.py (the report,
its differences and the resume file), all_records.py (`$all`, hidden events included).
"""

from core.tools.verify.report import (
    DEFAULT_MAX_DIFFERENCES,
    Difference,
    DifferenceKind,
    VerifyReport,
    VerifyState,
    public_endpoint,
)
from core.tools.verify.run import SAMPLE_SCAN, verify

__all__ = [
    "DEFAULT_MAX_DIFFERENCES",
    "SAMPLE_SCAN",
    "Difference",
    "DifferenceKind",
    "VerifyReport",
    "VerifyState",
    "public_endpoint",
    "verify",
]

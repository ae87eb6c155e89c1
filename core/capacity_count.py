"""How many events a store holds: counted when it is small, estimated when it is not.

EventStoreDB does not say how many records `$all` holds. A commit position is a byte offset
in the log, so the head's position divided by the bytes a record takes there estimates it:
the spacing of positions is measured on the first records of `$all` (the ones read to count)
and on its last ones, and the bytes between the two samples are taken to hold records at
their mean spacing. Of the records sampled, the share the job copies (its filters and kinds
of record, as the engine plans: core/progress.copied) gives the events to copy.
"""

from __future__ import annotations

from pydantic import BaseModel

from core.config import JobConfig
from core.eventstore import EventStore
from core.model import Event
from core.progress import copied

COUNT_UP_TO = 100_000
"""Records of `$all` read from its start to count exactly; past them, estimated."""
COUNT_BYTES = 64 * 1024 * 1024
"""...and at most this many bytes of events (big events): then estimated."""
TAIL_SAMPLE = 2_000
"""Records read at the end of `$all` for the estimate."""
PAGE = 1_000


class StoreCount(BaseModel):
    """The size of the source's `$all`, and how it was found."""

    records: int  # records of `$all`, every kind (a scan reads them all)
    events: int  # of them, those the job copies
    exact: bool
    basis: str
    head_position: int


class _Sample(BaseModel):
    records: int = 0
    copied: int = 0
    first: int | None = None  # commit positions
    last: int | None = None
    bytes: int = 0  # event sizes read

    def add(self, job: JobConfig, event: Event) -> None:
        self.records += 1
        self.copied += copied(job, event)
        self.bytes += event.size
        if self.first is None or event.commit_position < self.first:
            self.first = event.commit_position
        if self.last is None or event.commit_position > self.last:
            self.last = event.commit_position

    @property
    def span(self) -> int:
        return (self.last or 0) - (self.first or 0)


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def count_store(
    job: JobConfig,
    source: EventStore,
    *,
    count_up_to: int = COUNT_UP_TO,
    max_bytes: int = COUNT_BYTES,
    tail: int = TAIL_SAMPLE,
) -> StoreCount:
    """Count `$all` from its start, up to `count_up_to` records (and `max_bytes`); when the
    end is not reached, estimate the rest from the positions' spacing (RelayError when the
    source cannot be read)."""
    head = source.head_position()
    start = _Sample()

    def counted() -> StoreCount:  # every record of `$all` was read
        return StoreCount(
            records=start.records,
            events=start.copied,
            exact=True,
            basis=f"counted: all {start.records:,} records of $all read",
            head_position=head,
        )

    after: int | None = None
    while start.records < count_up_to and start.bytes < max_bytes:
        want = min(PAGE, count_up_to - start.records)
        page = list(source.read_all_after(after, want))
        for event in page:
            start.add(job, event)
        if len(page) < want:  # the end of $all: every record counted
            return counted()
        after = page[-1].commit_position
    end = _Sample()
    for event in source.read_all_backwards(None, tail):
        if start.last is not None and event.commit_position <= start.last:
            break  # the two samples meet: the end holds nothing more
        end.add(job, event)
    if end.records == 0:
        return counted()
    spacing_records = max(1, start.records - 1) + max(0, end.records - 1)
    spacing = (start.span + end.span) / spacing_records  # bytes of log a record takes
    gap = max(0, (end.first or 0) - (start.last or 0))  # log bytes between the samples
    middle = max(0, round(gap / spacing) - 1) if spacing > 0 else 0
    records = start.records + middle + end.records
    share = (start.copied + end.copied) / (start.records + end.records)
    events = round(records * share)
    basis = (
        f"estimated, not counted: $all's last record is at position {head:,}; its first "
        f"{start.records:,} and last {end.records:,} records take {spacing:,.0f} bytes of log "
        f"each on average, so the {_mib(gap)} between them hold about {middle:,} more "
        f"records; {share:.1%} of the records sampled are ones the job copies. Deleted, "
        "scavenged or big events in the middle of the log make it wrong either way"
    )
    return StoreCount(records=records, events=events, exact=False, basis=basis, head_position=head)

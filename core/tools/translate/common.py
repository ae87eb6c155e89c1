"""What every translation needs: how far the relay got, and claims confirmed in the source."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

from pydantic import BaseModel

from core import rules
from core.checkpoint import open_store
from core.config import JobConfig
from core.engine.locate import Locator
from core.engine.plan import Origin, Planner, SliceIndex
from core.errors import NotReplicatedError, TranslateError
from core.eventstore import EventStore
from core.model import Event

PAGE = 500


MAX_MISSES = 200  # replicated-looking source events not found on the target: give up


UNMARKED_RUN = 1000  # target records without `$original*` looked up after an anchor


class TranslatedPosition(BaseModel):
    kind: Literal["all", "stream"]
    stream: str | None = None
    source: int | None  # None = "start": the subscription has processed nothing yet
    target: int | None  # None = from the start ($all or the stream)
    method: Literal["original-metadata", "event-id", "start"]
    anchor_event_id: str | None = None  # the target event the subscription resumes after
    relay_position: int | None = None


def relay_position(job: JobConfig) -> int | None:
    """Source `$all` position the job has committed (None = nothing copied yet)."""
    store = open_store(job.checkpoint_store)
    try:
        checkpoint = store.load(job.job_id)
    finally:
        store.close()
    return checkpoint.position.commit if checkpoint and checkpoint.position else None


NOT_LOADED = -2  # `relayed` argument default: read the job's checkpoint from its store

START = "start"  # a checkpoint meaning "nothing processed yet": the start on the target too


def from_start(kind: Literal["all", "stream"], stream: str | None = None) -> TranslatedPosition:
    """A subscription that has processed nothing starts from the start on the target too."""
    return TranslatedPosition(kind=kind, stream=stream, source=None, target=None, method="start")


def require_replicated(
    job: JobConfig, source: EventStore, position: int, what: str, relayed: int | None = NOT_LOADED
) -> int:
    if relayed == NOT_LOADED:
        relayed = relay_position(job)
    if relayed is None or position > relayed:
        head = source.head_position()
        if position > head:
            raise TranslateError(
                f"{what} is beyond the source's $all head ({head:,}): the source has no record "
                "there",
                hint="give a checkpoint the subscription saved while reading this source (a "
                "target position or another database's would not be in it)",
            )
        at = "has not copied anything yet" if relayed is None else f"is at {relayed:,}"
        behind = f" ({head - (relayed or 0):,} bytes of the source behind)" if head else ""
        raise NotReplicatedError(
            f"{what} (source position {position:,}) is not replicated yet: the relay of job "
            f"{job.job_id!r} {at}{behind}",
            hint="let the relay catch up (esdb-relay run --until-caught-up, or esdb-relay "
            "status to watch it), then translate again",
        )
    return relayed


def replicated_kind(job: JobConfig, event: Event) -> bool:
    """An event or stream metadata the job copies: the records that carry `$original*`."""
    return rules.copied_kind(job.filters, event) in (rules.Kind.EVENT, rules.Kind.METADATA)


class Unconfirmed(Exception):
    """A claim the translation rests on is not confirmed by the source."""


def claims_of(job: JobConfig, source: EventStore) -> Locator:
    transform = rules.load_transform(job.transform)
    return Locator(source, Planner(job, source, transform), SliceIndex())


def confirm(claims: Locator, record: Event | None, holds: Callable[[Origin], bool]) -> None:
    """The source confirms the record's claim, and `holds` of where it came from."""
    if record is None:
        return
    origin = claims.claimed(record.stream, record)
    if origin is None or not holds(origin):
        raise Unconfirmed
    position = rules.read_original_position(record.metadata)
    revision = rules.read_original_revision(record.metadata)
    if position not in (None, origin.position) or revision not in (None, origin.revision):
        raise Unconfirmed  # one key the source's, the other not: not the relay's


def next_marked(
    read_after: Callable[[int | None, int], Iterable[Event]],
    after: Event | None,
    claim: Callable[[bytes], int | None],
    *,
    key: Callable[[Event], int] = lambda e: e.commit_position,
) -> Event | None:
    """The first record after `after` that carries a claim (None: none in UNMARKED_RUN)."""
    at = key(after) if after else None
    seen = 0
    while seen < UNMARKED_RUN:
        page = list(read_after(at, 64))
        for event in page:
            if claim(event.metadata) is not None:
                return event
        if len(page) < 64:
            return None
        seen += len(page)
        at = key(page[-1])
    return None

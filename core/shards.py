"""Shards: a job split into K chains by stream name, each reading `$all` through a server-side
filter that only one shard's regex passes.

The partitioning is by the last L characters of the stream name (L = 1, 2 or 3), chosen from
the data: the events per stream of a sample of `$all` are summed per suffix and the suffixes
packed into K shards, largest first, each into the lightest shard. Why suffixes: the part of a
stream name that varies most is the id at its end (`order-8f3a…`, `account-000123`), and a
metadata stream `$$name` ends as its stream does, so the two always fall in the same shard
(the metadata of a stream is applied in order with its events).

Every name matches exactly one shard's regex: shards 0..K-2 each list their suffixes; the last
shard takes every name the others do not (a negative lookahead over all their suffixes), so a
stream that appears later, or a suffix the sample never saw, lands in the last shard. Suffixes
hold only ASCII letters, digits and `_-.:@/+#=~` (never `$`); other names go to the last shard.
The regexes are written to mean the same in .NET's Regex (the server's filter) and Python's
`re` (ours): `$` is end or before a final newline in both, `[\\s\\S]` crosses newlines in both,
and only non-word characters are escaped (.NET refuses `\\_`).

The plan is fixed for the job's life: recorded once in the job's own checkpoint record
(`fix_plan`), and read back by every shard; the regexes stored are the truth, not recomputed.
"""

from __future__ import annotations

import functools
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from core.model import Event

MAX_SHARDS = 64
SUFFIX_LENGTHS = (1, 2, 3)
MAX_KEYS = 4096  # suffixes a plan may list in all (the last shard's regex names them all)
_WORD = set(string.ascii_letters + string.digits + "_")
_SAFE = _WORD | set("-.:@/+#=~")
GOOD_BALANCE = 1.10  # the largest shard within 10% of the mean: no need for longer suffixes


def shard_job_id(job_id: str, index: int) -> str:
    """The key a shard's lease, checkpoint and history are kept under."""
    return f"{job_id}.shard-{index}"


def _escape(key: str) -> str:
    return "".join(c if c in _WORD else "\\" + c for c in key)


def suffix_regex(keys: Iterable[str]) -> str:
    """Names ending with one of `keys`."""
    return "(?:" + "|".join(_escape(k) for k in sorted(keys)) + ")$"


def rest_regex(keys: Iterable[str]) -> str:
    """Names ending with none of `keys` (every name when there are none)."""
    keys = sorted(keys)
    if not keys:
        return "^"
    return r"^(?![\s\S]*(?:" + "|".join(_escape(k) for k in keys) + ")$)"


def suffix_of(stream: str, length: int) -> str | None:
    """The suffix a plan of this length files `stream` under, None when it goes to the last
    shard whatever the plan (too short, or a character a suffix never holds)."""
    if len(stream) < length:
        return None
    key = stream[-length:]
    return key if all(c in _SAFE for c in key) else None


class ShardPlan(BaseModel):
    """How a job's streams are split. `regexes[i]` is shard i's server-side filter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(ge=2, le=MAX_SHARDS)
    suffix_length: int = Field(ge=1, le=max(SUFFIX_LENGTHS))
    regexes: tuple[str, ...]
    keys: tuple[str, ...] = Field(
        description="the suffixes of shards 0..K-2, each shard's separated by spaces (the last "
        "shard takes every other name); a flat list, since Firestore keeps no nested arrays"
    )
    expected_events: tuple[int, ...] = Field(
        description="events of the sample per shard, as this plan splits them"
    )
    sampled_events: int = Field(ge=0)
    exact: bool = Field(description="the sample was the whole of `$all` when planned")
    planned_at: AwareDatetime

    @model_validator(mode="after")
    def _lengths(self) -> ShardPlan:
        if not (len(self.regexes) == len(self.expected_events) == self.count):
            raise ValueError("a shard plan needs one regex and one count per shard")
        if len(self.keys) != self.count - 1:
            raise ValueError("a shard plan lists the suffixes of all shards but the last")
        return self

    @functools.cached_property
    def compiled(self) -> tuple[re.Pattern[str], ...]:
        return tuple(re.compile(r) for r in self.regexes)

    def matching(self, stream: str) -> list[int]:
        """The shards whose regex passes `stream` (always exactly one)."""
        return [i for i, p in enumerate(self.compiled) if p.search(stream)]

    def shard_of(self, stream: str) -> int:
        # The last shard's regex (a lookahead over every other shard's suffixes) is the costly
        # one, and a name no other shard takes is its: the same answer as `matching`.
        for i, pattern in enumerate(self.compiled[:-1]):
            if pattern.search(stream):
                return i
        return self.count - 1

    def shard(self, job_id: str, index: int) -> Shard:
        if not 0 <= index < self.count:
            raise IndexError(
                f"shard {index} of a job with {self.count} shards (0-{self.count - 1})"
            )
        return Shard(job_id, index, self.count, self.regexes[index])

    def shards(self, job_id: str) -> list[Shard]:
        return [self.shard(job_id, i) for i in range(self.count)]

    @property
    def balance(self) -> float:
        """The largest shard's events over the mean (1.0 = even), as planned from the sample."""
        total = sum(self.expected_events)
        if not total:
            return 1.0
        return max(self.expected_events) / (total / self.count)


@dataclass(frozen=True)
class Shard:
    """One shard of a job: its own chain, lease and checkpoint (`key`), reading the streams
    `regex` passes."""

    job_id: str
    index: int
    count: int
    regex: str

    @property
    def key(self) -> str:
        return shard_job_id(self.job_id, self.index)

    def __str__(self) -> str:
        return f"shard {self.index} of {self.count}"


def plan_shards(
    counts: Mapping[str, int],
    count: int,
    *,
    exact: bool,
    now: datetime | None = None,
) -> ShardPlan:
    """Split streams with these event counts into `count` shards: for each suffix length, pack
    the suffixes largest first into the lightest shard (names without a suffix are the last
    shard's from the start); keep the shortest length whose largest shard is within
    GOOD_BALANCE of the mean, else the most even one."""
    if not 2 <= count <= MAX_SHARDS:
        raise ValueError(f"a job has 2-{MAX_SHARDS} shards, not {count}")
    best: ShardPlan | None = None
    for length in SUFFIX_LENGTHS:
        plan = _pack(counts, count, length, exact, now or datetime.now(UTC))
        if plan is None:
            continue
        if best is None or plan.balance < best.balance - 1e-9:
            best = plan
        if best.balance <= GOOD_BALANCE:
            break
    assert best is not None  # length 1 has at most len(_SAFE) suffixes
    return best


def _pack(
    counts: Mapping[str, int], count: int, length: int, exact: bool, now: datetime
) -> ShardPlan | None:
    by_key: Counter[str] = Counter()
    rest = 0
    for stream, n in counts.items():
        key = suffix_of(stream, length)
        if key is None:
            rest += n
        else:
            by_key[key] += n
    if len(by_key) > MAX_KEYS:
        return None
    loads = [0] * count
    loads[-1] = rest
    keys: list[list[str]] = [[] for _ in range(count)]
    for key, n in sorted(by_key.items(), key=lambda kv: (-kv[1], kv[0])):
        lightest = min(range(count), key=lambda i: (loads[i], i))
        loads[lightest] += n
        keys[lightest].append(key)
    listed = [k for shard_keys in keys[:-1] for k in shard_keys]
    regexes = [suffix_regex(k) if k else "(?!)" for k in keys[:-1]] + [rest_regex(listed)]
    return ShardPlan(
        count=count,
        suffix_length=length,
        regexes=tuple(regexes),
        keys=tuple(" ".join(sorted(k)) for k in keys[:-1]),
        expected_events=tuple(loads),
        sampled_events=sum(counts.values()),
        exact=exact,
        planned_at=now,
    )


class _Reads(Protocol):
    def read_all_after(self, position: int | None, limit: int) -> Iterable[Event]: ...
    def read_all_backwards(self, before: int | None, limit: int) -> list[Event]: ...


def sample_counts(source: _Reads, limit: int = 100_000) -> tuple[dict[str, int], bool]:
    """Records per stream name in a sample of `$all`: its first `limit` records and its last
    `limit` (the whole log when it holds fewer than twice that). True when the sample is the
    whole log. Every record counts, metadata and system records included: a shard reads them
    all."""
    counts: Counter[str] = Counter()
    first = list(source.read_all_after(None, limit))
    for event in first:
        counts[event.stream] += 1
    if len(first) < limit:
        return dict(counts), True
    tail = _tail(source, limit, after=first[-1].commit_position)
    for event in tail:
        counts[event.stream] += 1
    return dict(counts), len(tail) < limit


# Records per backwards call: one call of a whole 100,000-record tail outlasted its deadline.
SAMPLE_PAGE = 4_096


def _tail(source: _Reads, limit: int, after: int) -> list[Event]:
    """The last `limit` records of `$all` (newest first), down to `after` (exclusive), read in
    pages."""
    tail: list[Event] = []
    before: int | None = None
    while len(tail) < limit:
        want = min(SAMPLE_PAGE, limit - len(tail))
        page = source.read_all_backwards(before, want)
        for event in page:
            if event.commit_position <= after:
                return tail
            tail.append(event)
        if len(page) < want:
            return tail
        before = page[-1].commit_position
    return tail

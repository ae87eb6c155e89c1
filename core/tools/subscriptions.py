"""Re-create the source's persistent subscriptions on the target, at translated positions.

For every group on the source (stream and `$all`): its settings, consumer strategy, start
position and last checkpointed position. A checkpoint C means "processed up to and including
C"; a group's start position is inclusive. So the target group starts at the first target
record after the translation of C (core.tools.translate: the last replicated event at or before C):
- `$all`: the commit position of the target record that follows the translated position (0
  when nothing replicated lies at or before C; the end when the target holds nothing after
  it yet, e.g. after cutover);
- a stream: the translated revision + 1 (0 when none).
A group never checkpointed keeps its start setting: the start and the end stay so, an explicit
position S is translated as a checkpoint at S - 1.

`$all` groups' filters are not in GetInfo; they are read from the server's saved
configuration (`$persistentSubscriptionConfig`). A filter esdbclient cannot express exactly
(a prefix filter, a hand-written regex) makes the group `manual`.

The plan is idempotent: a target group with the same settings and start is `unchanged`; other
settings are an `update`; a target group that has a checkpoint of its own is never moved (it
is in use), only its settings are updated.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from core.config import JobConfig
from core.errors import RelayError
from core.eventstore import EventStore
from core.eventstore.admin import GroupSettings
from core.tools.translate import NOT_LOADED, relay_position, translate_position, translate_stream

ALL = "$all"

Action = Literal["create", "update", "unchanged", "manual", "error"]


class SourceGroup(BaseModel):
    stream: str  # "$all" for `$all`
    group: str
    settings: GroupSettings
    start_from: str  # as GetInfo reports it: "C:0/P:0", "-1", "12"...
    last_checkpoint: str | None  # None when never checkpointed
    filter: dict | None = None  # `$all` only: the saved filter DTO


class GroupPlan(BaseModel):
    stream: str
    group: str
    action: Action
    start: int | None = None  # target start (inclusive); None = the end
    start_text: str = ""
    source_checkpoint: str | None = None
    source_start: str = ""
    settings: GroupSettings | None = None
    filter_include: list[str] = Field(default_factory=list)
    filter_exclude: list[str] = Field(default_factory=list)
    filter_by_stream_name: bool = False
    changes: list[str] = Field(default_factory=list)
    reason: str = ""


# ------------------------------------------------------------------------------ reading
def read_source_groups(source: EventStore) -> list[SourceGroup]:
    entries = {
        (e.get("stream"), e.get("group")): e for e in source.persistent_subscription_config()
    }
    groups = []
    for info in source.list_persistent_subscriptions():
        stream = info.event_source
        group = info.group_name
        entry = entries.get((stream, group)) or {}
        groups.append(
            SourceGroup(
                stream=stream,
                group=group,
                settings=GroupSettings.from_info(info),
                start_from=info.start_from,
                last_checkpoint=info.last_checkpointed_event_position or None,
                filter=entry.get("filter") if stream == ALL else None,
            )
        )
    groups.sort(key=lambda g: (g.stream != ALL, g.stream, g.group))
    return groups


def _commit(text: str) -> int:
    """The commit position of "C:1/P:1" (or a bare number)."""
    return int(text.split("/")[0].removeprefix("C:"))


def _filter_args(dto: dict | None) -> tuple[list[str], list[str], bool] | str:
    """esdbclient arguments that rebuild exactly this saved filter, or why they cannot."""
    if not dto:
        return [], [], False
    by_stream = dto.get("context") == "streamid"
    data = str(dto.get("data") or "")
    if dto.get("type") != "regex":
        return f"a prefix filter ({data!r}) cannot be created through esdbclient"
    if data.startswith("^(?!(") and data.endswith("$))"):
        return [], [data[5:-3]], by_stream
    if data.startswith("^") and data.endswith("$") and not data.endswith("\\$"):
        return [data[1:-1]], [], by_stream
    return f"the filter regex {data!r} cannot be rebuilt exactly through esdbclient"


# ------------------------------------------------------------------------------ planning
def target_start(
    job: JobConfig,
    source: EventStore,
    target: EventStore,
    group: SourceGroup,
    relayed: int | None = NOT_LOADED,
) -> int | None:
    """The inclusive start of the target group (None = the end); see the module doc."""
    if group.stream == ALL:
        if group.last_checkpoint:
            processed: int | None = _commit(group.last_checkpoint)
        else:
            start = _commit(group.start_from)
            if start < 0:
                return None
            if start == 0:
                return 0
            processed = start - 1
        assert processed is not None
        translated = translate_position(job, source, target, processed, relayed=relayed).target
        if translated is None:
            return 0
        following = list(target.read_all_after(translated, 1))
        return following[0].commit_position if following else None
    if group.last_checkpoint:
        processed_revision = int(group.last_checkpoint)
    else:
        start = int(group.start_from)
        if start < 0:
            return None
        if start == 0:
            return 0
        processed_revision = start - 1
    revision = translate_stream(
        job, source, target, group.stream, processed_revision, relayed=relayed
    ).target
    return 0 if revision is None else revision + 1


def _start_text(stream: str, start: int | None) -> str:
    if stream == ALL:
        return "C:-1/P:-1" if start is None else f"C:{start}/P:{start}"
    return "-1" if start is None else str(start)


def plan_group(
    job: JobConfig,
    source: EventStore,
    target: EventStore,
    group: SourceGroup,
    relayed: int | None = NOT_LOADED,
) -> GroupPlan:
    plan = GroupPlan(
        stream=group.stream,
        group=group.group,
        action="create",
        source_checkpoint=group.last_checkpoint,
        source_start=group.start_from,
        settings=group.settings,
    )
    if group.stream != ALL and group.stream.startswith("$"):
        plan.action = "manual"
        plan.reason = (
            f"{group.stream!r} is a system stream: its links are not copied but re-created by "
            "the target's projections, with other revisions; create this group by hand"
        )
        return plan
    if group.stream != ALL and not job.filters.accepts_stream(group.stream):
        plan.action = "manual"
        plan.reason = f"the job does not replicate {group.stream!r} (its filters exclude it)"
        return plan
    args = _filter_args(group.filter)
    if isinstance(args, str):
        plan.action = "manual"
        plan.reason = args + "; create the group on the target by hand"
        return plan
    plan.filter_include, plan.filter_exclude, plan.filter_by_stream_name = args
    try:
        plan.start = target_start(job, source, target, group, relayed)
    except RelayError as e:
        plan.action = "error"
        plan.reason = str(e)
        return plan
    plan.start_text = _start_text(group.stream, plan.start)
    if plan.start is None and group.last_checkpoint:
        plan.reason = (
            "the target holds nothing after the checkpoint yet: the group starts at the end, "
            "so create it before the relay copies more (e.g. at cutover)"
        )
    existing = target.persistent_subscription_info(group.group, group.stream)
    if existing is None:
        return plan
    current = GroupSettings.from_info(existing)
    plan.changes = [
        f"{name}: {getattr(current, name)} → {value}"
        for name, value in group.settings
        if getattr(current, name) != value
    ]
    target_filter = None
    if group.stream == ALL:
        entries = target.persistent_subscription_config()
        target_filter = next(
            (
                e.get("filter")
                for e in entries
                if e.get("stream") == ALL and e.get("group") == group.group
            ),
            None,
        )
        if _filter_key(target_filter) != _filter_key(group.filter):
            plan.action = "manual"
            plan.reason = (
                "the target group has another filter, which an update cannot change: delete "
                "the target group and run again"
            )
            return plan
    in_use = bool(existing.last_checkpointed_event_position)
    same_start = _same_start(group.stream, existing.start_from, plan.start)
    if in_use and not same_start:
        # Never move a group that consumers already use on the target.
        plan.start = _parse_start(group.stream, existing.start_from)
        plan.start_text = existing.start_from
        plan.reason = "in use on the target (it has its own checkpoint): start not moved"
        same_start = True
    elif not same_start:
        plan.changes.append(f"start: {existing.start_from} → {plan.start_text}")
    plan.action = "update" if plan.changes else "unchanged"
    return plan


def _filter_key(dto: dict | None) -> tuple:
    if not dto:
        return ()
    return (dto.get("context"), dto.get("type"), dto.get("data"))


def _parse_start(stream: str, text: str) -> int | None:
    value = _commit(text) if stream == ALL else int(text)
    return None if value < 0 else value


def _same_start(stream: str, text: str, start: int | None) -> bool:
    return _parse_start(stream, text) == start


def plan_subscriptions(job: JobConfig, source: EventStore, target: EventStore) -> list[GroupPlan]:
    groups = read_source_groups(source)
    relayed = relay_position(job) if groups else None  # one checkpoint read for all groups
    return [plan_group(job, source, target, g, relayed) for g in groups]


def apply_plan(target: EventStore, plans: list[GroupPlan]) -> list[GroupPlan]:
    """Carry out the create/update actions; returns the plans applied."""
    done = []
    for plan in plans:
        if plan.action not in ("create", "update"):
            continue
        assert plan.settings is not None
        target.save_persistent_subscription(
            plan.group,
            plan.stream,
            update=plan.action == "update",
            start=plan.start,
            settings=plan.settings.model_dump(),
            filter_include=plan.filter_include,
            filter_exclude=plan.filter_exclude,
            filter_by_stream_name=plan.filter_by_stream_name,
        )
        done.append(plan)
    return done


def migrate_subscriptions(
    job: JobConfig, source: EventStore, target: EventStore, *, apply: bool = False
) -> list[GroupPlan]:
    plans = plan_subscriptions(job, source, target)
    if apply:
        apply_plan(target, plans)
    return plans

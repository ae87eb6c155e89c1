"""`esdb-relay plan`'s answer for a job's real store: its size (counted or estimated), the
write path its target offers, and per cloud the copy as one chain and sharded (core/capacity.py).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from core import capacity
from core.capacity import CloudAnswer, Figures, ModeFigure, Question, WritePath
from core.capacity_count import StoreCount, count_store
from core.capacity_prices import PRICES_AS_OF
from core.config import JobConfig
from core.eventstore import EventStore


class Settings(BaseModel):
    """What the user asks on top of the job."""

    target_hours: float = Field(default=capacity.DEFAULT_TARGET_HOURS, gt=0)
    target_write_rate: float | None = Field(default=None, gt=0)
    target_size: str | None = None
    source_scan_rate: float | None = Field(default=None, gt=0)
    max_shards: int = Field(default=capacity.DEFAULT_MAX_SHARDS, ge=1)
    events: int | None = Field(default=None, gt=0)  # the user's own N instead of counting
    count_up_to: int = Field(default=100_000, ge=1)


class CapacityPlan(BaseModel):
    job_id: str
    store: StoreCount
    mode: str  # the job's mode as the figures describe it
    write_path: WritePath
    write_path_basis: str
    figure: ModeFigure
    figure_note: str | None
    figures_basis: str
    target_hours: float
    target_write: capacity.Capacity
    source_scan: capacity.Capacity
    clouds: list[CloudAnswer]
    assumptions: list[str]


def write_path(job: JobConfig, target: EventStore) -> tuple[WritePath, str]:
    """The path the engine takes to this target for this job, as core/engine decides it."""
    if not job.multi_append:
        return "per-stream", "the job sets multi_append = false"
    if job.mode == "ordered" and target.supports_append_records():
        return "append-records", "the target lists AppendRecords (KurrentDB 26.1) in ServerFeatures"
    if target.supports_multi_append():
        return "multi-append", "the target lists AppendSession (KurrentDB 25.1) in ServerFeatures"
    return "per-stream", "the target lists no multi-stream append in ServerFeatures"


def plan(
    job: JobConfig,
    source: EventStore,
    target: EventStore,
    settings: Settings,
    figures: Figures,
) -> CapacityPlan:
    """The answer for `job` (RelayError when a side cannot be read; ValueError for settings
    the model cannot use, saying which)."""
    path, path_basis = write_path(job, target)
    figure, note = figures.pick(job.mode, job.partitions, path)
    target_write = capacity.target_capacity(settings.target_write_rate, settings.target_size)
    source_scan = capacity.source_capacity(settings.source_scan_rate)
    if settings.events is not None:
        store = StoreCount(
            records=settings.events,
            events=settings.events,
            exact=True,
            basis="given (--events); the source was not read",
            head_position=0,
        )
    else:
        store = count_store(job, source, count_up_to=settings.count_up_to)
    if store.events == 0:
        raise ValueError(
            "the source holds no events this job copies: nothing to plan (give a size with "
            "--events to plan for one)"
        )
    question = Question(
        events=store.events,
        records=store.records,
        figure=figure,
        target_hours=settings.target_hours,
        target_write=target_write,
        source_scan=source_scan,
        max_shards=settings.max_shards,
    )
    assumptions = [
        f"per-process rate: {figure.events_per_second:,.0f} events/s at "
        f"{figure.cpu_seconds_per_million:,.0f} CPU s per million events ({figure.label}), "
        f"{figures.basis}; each cloud caps it by its function's CPU share. Real network "
        "latency and a real target's speed replace the emulated 5 ms: measure a slice "
        "(`esdb-relay run --until-caught-up` on a copy) to check it",
        f"target write capacity: {target_write.basis}",
        f"source scan capacity: {source_scan.basis}",
        f"prices: {PRICES_AS_OF}; the deployment infra/ makes on each cloud (docs/cost-model.md)",
    ]
    return CapacityPlan(
        job_id=job.job_id,
        store=store,
        mode=_describe(job, path),
        write_path=path,
        write_path_basis=path_basis,
        figure=figure,
        figure_note=note,
        figures_basis=figures.basis,
        target_hours=settings.target_hours,
        target_write=target_write,
        source_scan=source_scan,
        clouds=capacity.answer(question),
        assumptions=assumptions,
    )


def _describe(job: JobConfig, path: WritePath) -> str:
    mode = "ordered" if job.mode == "ordered" else f"partitioned {job.partitions}"
    return f"{mode}, {capacity.WRITE_PATHS[path]}"

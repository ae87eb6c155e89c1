"""One cloud-function invocation, provider-neutral: parse the payload, run, say what is next.

The handlers in handlers/aws|gcp|azure only turn their trigger into a payload, call `invoke`,
and chain the returned request when the slice did not reach the source's tail. A payload can
name the job, a range to backfill and a dry run — never endpoints or credentials: those come
from the deployment's configuration and secret store only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.checkpoint import Checkpoint, LeasesUntil
from core.config import JobConfig, range_job_id
from core.config_errors import format_validation_error
from core.engine import SliceResult
from core.errors import ConfigError, LeaseLostError, RelayError
from core.logs import logger
from core.metrics import Sample, Sink, emit, from_progress, measure_failure, measure_slice
from core.progress import Liveness, Progress
from core.relay import Relay, RunTotals
from core.shard_plans import stored_plan
from core.shards import MAX_SHARDS, Shard, ShardPlan
from core.tools.preflight import preflight_from_env

RelayFactory = Callable[[JobConfig], Relay]

# A scheduled tick arriving while a chain is copying would start a second chain: every slice
# that does not reach the tail enqueues the next. A chain hop follows its slice within seconds,
# so a slice that ended this recently, behind the tail and without error, means a chain runs.
CHAIN_ACTIVE_SECONDS = 60.0
# $all positions are signed 64-bit on the server (TFPos); larger ones cannot even be sent.
MAX_POSITION = 2**63 - 1
# The lease taken to raise a job's chain generation: a checkpoint read and write.
CHAIN_LEASE_SECONDS = 30.0


def _process_started(now: Callable[[], float] = time.monotonic) -> float:
    """When this process started, on the monotonic clock: Linux's start time of the process
    (/proc/self/stat, in clock ticks since boot) against the time since boot; the import of
    this module where /proc cannot tell."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        started_after_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - started_after_boot
    except (OSError, ValueError, IndexError, AttributeError):
        return now()
    return now() - max(0.0, age)


PROCESS_STARTED = _process_started()


@dataclass
class InvocationClock:
    """When the platform stops this invocation, as seconds left at any moment.

    - `remaining`: the platform's own answer (Lambda's context.get_remaining_time_in_millis):
      exact, and it counts whatever start-up the platform counted.
    - otherwise `timeout` (the function's configured timeout) counted from `started`, the
      earliest moment this process knows of: the process start for the first invocation a
      process serves (a cold start: imports and connections count against the timeout), the
      handler's start after that; `seconds_left` also takes off the job's
      budget.startup_margin_seconds for what the platform did before the process started.
    """

    started: float = field(default_factory=time.monotonic)
    timeout: float | None = None
    remaining: Callable[[], float] | None = None
    now: Callable[[], float] = time.monotonic

    @classmethod
    def from_remaining(cls, remaining_seconds: float | None) -> InvocationClock:
        """A clock that had `remaining_seconds` left when made (None: no limit)."""
        if remaining_seconds is None:
            return cls()
        return cls(timeout=remaining_seconds)

    def seconds_left(self, startup_margin: float = 0.0) -> float | None:
        if self.remaining is not None:
            return self.remaining()
        if self.timeout is None:
            return None
        return self.timeout - (self.now() - self.started) - startup_margin


_served_before = False
COLD_START_SECONDS = 120.0
"""The most process time before its first invocation that counts as that invocation's cold
start. A process that waited longer (an Azure pre-warmed instance, a test run) was not started
for it; the first invocation then counts this much, the platform's longest start-ups."""


def platform_clock(
    timeout_seconds: float, *, now: Callable[[], float] | None = None
) -> InvocationClock:
    """The clock of a platform that gives a function only its configured timeout (Cloud
    Functions, Azure Functions): counted from this process's start on its first invocation (a
    cold start, at most COLD_START_SECONDS back), from now on later ones."""
    global _served_before
    now = now or time.monotonic
    moment = now()
    started = moment if _served_before else max(PROCESS_STARTED, moment - COLD_START_SECONDS)
    _served_before = True
    return InvocationClock(started=min(started, moment), timeout=timeout_seconds, now=now)


class InvocationRequest(BaseModel):
    """The payload of a scheduled, queued or manual invocation."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    action: Literal["slice", "status", "preflight"] = Field(
        default="slice", description="slice (copy), status, or preflight (check connections)"
    )
    job: str | None = Field(default=None, description="the job this function runs, if named")
    from_position: int | None = Field(
        default=None,
        alias="from",
        ge=0,
        le=MAX_POSITION,
        description="backfill: first $all position to copy",
    )
    to_position: int | None = Field(
        default=None,
        alias="to",
        ge=0,
        le=MAX_POSITION,
        description="backfill: last $all position to copy",
    )
    dry_run: bool = Field(default=False, description="read and plan, write nothing")
    chained: bool = Field(
        default=False, description="set on the requests a slice enqueues for the next one"
    )
    generation: int | None = Field(
        default=None,
        ge=0,
        description="set on chained requests: the job's chain generation they were sent under; "
        "one from an older generation is dropped",
    )
    shard: int | None = Field(
        default=None,
        ge=0,
        lt=MAX_SHARDS,
        description="a sharded job's shard to run (its own chain); without it, a slice request "
        "on a sharded job starts every shard's chain that is not running",
    )

    @model_validator(mode="after")
    def _range(self) -> InvocationRequest:
        if self.to_position is not None and self.from_position is None:
            raise ValueError("'to' needs 'from': give the first position of the range too")
        if (
            self.from_position is not None
            and self.to_position is not None
            and self.to_position < self.from_position
        ):
            raise ValueError("'to' is before 'from'")
        if self.action != "slice" and (
            self.from_position is not None or self.dry_run or self.shard is not None
        ):
            raise ValueError(
                f"'from', 'to', 'dry_run' and 'shard' apply to action 'slice', not {self.action!r}"
            )
        return self

    def payload(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_defaults=True)


class InvocationResponse(BaseModel):
    action: str
    job_id: str
    status: Literal["ok", "busy", "failed"]
    next_action: Literal["continue", "idle", "stop"]
    chain: dict[str, Any] | None = Field(
        default=None, description="the payload of the next invocation to enqueue, if any"
    )
    fan_out: list[dict[str, Any]] = Field(
        default=[],
        description="a sharded job's tick: the payloads of the shard chains it starts, one each",
    )
    result: dict[str, Any] | None = None
    error: str | None = None


Chain = Callable[[dict[str, Any]], None]


def handle(
    payload: Any,
    *,
    remaining_seconds: float | None = None,
    clock: InvocationClock | None = None,
    chain: Chain,
    settings: Callable[[], Mapping[str, Any]] | None = None,
    relay_factory: RelayFactory = Relay,
    metrics: Sink | None = None,
) -> dict[str, Any]:
    """What every cloud handler does with one trigger's payload.

    The job comes from the deployment (env vars; `settings()` adds values read from a secret
    store). A payload that is not valid is refused with the reason (and not retried); a slice
    that fails raises after its error line, so the platform counts a failure and retries.
    `metrics` receives each slice's figures (core/metrics.py), a failed one's too, and the
    measured progress a status action reads.
    """
    sent: list[Sample] = []

    def sink(sample: Sample) -> None:
        sent.append(sample)
        if metrics:
            metrics(sample)

    request = job = None
    try:
        request = parse_request(payload)
        job = JobConfig.load(payload=settings()) if settings else JobConfig.load()
        response = invoke(
            request,
            job,
            remaining_seconds=remaining_seconds,
            clock=clock,
            relay_factory=relay_factory,
            metrics=sink if metrics else None,
        )
    except ConfigError as e:
        logger.error("invocation refused: %s", e)
        return {"status": "failed", "next_action": "stop", "error": str(e)}
    except RelayError as e:
        if e.details is None:  # else Relay.run_once logged it, with the job's liveness
            logger.error("slice failed: %s", e)
        if metrics and job and request and request.action == "slice" and not sent:
            # the relay could not even start (a connection refused, a store unreachable)
            emit(sink, lambda: measure_failure(None, job.job_id))
        raise
    if response.chain is not None:
        chain(response.chain)
        logger.info("chained the next invocation", extra={"chain": response.chain})
    for shard_request in response.fan_out:
        chain(shard_request)
        logger.info("started a shard's chain", extra={"chain": shard_request})
    return response.model_dump(mode="json")


def parse_request(payload: Any) -> InvocationRequest:
    """Validate a trigger's payload; ConfigError names the field and the fix."""
    if payload is None or payload == "":
        payload = {}
    if not isinstance(payload, Mapping):
        raise ConfigError(
            f"the invocation payload must be a JSON object, not {type(payload).__name__}",
            hint='send e.g. {"action": "slice"} or {"from": 0, "to": 123456}',
        )
    try:
        return InvocationRequest.model_validate(payload)
    except ValidationError as e:
        raise ConfigError(
            "invalid invocation payload:\n" + format_validation_error(e, InvocationRequest),
            hint="valid keys: action, job, from, to, dry_run, chained, generation, shard — "
            'e.g. {"from": 0}',
        ) from None


def invoke(
    request: InvocationRequest,
    job: JobConfig,
    *,
    remaining_seconds: float | None = None,
    clock: InvocationClock | None = None,
    relay_factory: RelayFactory = Relay,
    metrics: Sink | None = None,
) -> InvocationResponse:
    """Run one invocation. Errors (RelayError) propagate, so the platform records a failure
    and retries the trigger; the handler logs them first. `clock` says when the platform stops
    the invocation (`remaining_seconds`: that many seconds from now; neither: no limit)."""
    clock = clock or InvocationClock.from_remaining(remaining_seconds)
    if request.job is not None and request.job != job.job_id:
        raise ConfigError(
            f"this function runs job {job.job_id!r}, not {request.job!r}",
            hint="invoke the function deployed for that job, or leave 'job' out",
        )
    if request.action == "preflight":
        # Before any Relay: its connections are what preflight examines, step by step.
        report = preflight_from_env(job)
        return InvocationResponse(
            action="preflight",
            job_id=job.job_id,
            status="ok" if report.ok else "failed",
            next_action="stop",
            result=report.model_dump(mode="json"),
            error=None if report.ok else report.summary(),
        )
    with relay_factory(job) as relay:
        if request.action == "status":
            progress = relay.progress()
            emit(metrics, lambda: from_progress(progress))  # the measured figures
            return _status(job, progress)
        try:
            return _slice(request, job, relay, clock, metrics)
        except RelayError:
            if not request.dry_run:
                emit(metrics, lambda: measure_failure(relay, job.job_id, _failed(request, relay)))
            raise


def _slice(
    request: InvocationRequest,
    job: JobConfig,
    relay: Relay,
    clock: InvocationClock,
    metrics: Sink | None = None,
) -> InvocationResponse:
    range_job = job
    start_after = stop_at = None
    if request.from_position is not None:
        stop_at = (
            request.to_position if request.to_position is not None else relay.source.head_position()
        )
        range_job = job.for_range(request.from_position, stop_at)
        start_after = request.from_position - 1 if request.from_position > 0 else None
    if job.shards > 1 and request.shard is None:
        if request.dry_run:
            raise ConfigError(
                f"job {job.job_id!r} is split into {job.shards} shards: a dry run reads one",
                hint='name the shard, e.g. {"dry_run": true, "shard": 0}',
            )
        if request.chained:
            # A chain message of the job as one chain, sent before it was split (or forged):
            # its shards' chains run it now; fanning out again would restart them all.
            return _skipped(job, f"a chain message without a shard on a job of {job.shards} shards")
        # every shard of a range copies up to the same end (the range's records are named after it)
        return _fan_out(range_job, relay, request.model_copy(update={"to_position": stop_at}))
    shard = _shard(request, range_job, relay)
    key = shard.key if shard else range_job.job_id  # the chain's own record
    if request.chained and not request.dry_run:
        current = _generation(relay, key)
        if (request.generation or 0) < current:
            # A message of a chain that another has replaced (e.g. redelivered after a failure
            # while a schedule tick started a new chain): acknowledged, nothing run.
            return _skipped(
                range_job,
                f"a stale chain message (generation {request.generation or 0}; the "
                f"{'shard' if shard else 'job'}'s chain is at generation {current})",
            )
    elif not request.chained and request.from_position is None and _chain_running(relay, key):
        return _skipped(job, f"a chain of slices is already copying this {_what(shard)}")
    result = _run_until_stopped(
        relay, range_job, clock, start_after, stop_at, request.dry_run, shard
    )
    if not request.dry_run:
        emit(metrics, lambda: measure_slice(relay, result, shard=shard))
    chain = None
    if result.next_action == "continue" and result.status == "ok" and not request.dry_run:
        generation = _chain_generation(relay, request, key)
        if generation is not None:
            # A backfill's next invocation must copy the same range, even if the head moved on.
            next_request = request.model_copy(
                update={"to_position": stop_at, "chained": True, "generation": generation}
            )
            chain = next_request.payload()
    return InvocationResponse(
        action="slice",
        job_id=range_job.job_id,
        status=result.status,
        next_action=result.next_action,
        chain=chain,
        result=_slice_figures(result, relay.liveness(key), dry_run=request.dry_run),
        error=result.error,
    )


def _failed(request: InvocationRequest, relay: Relay) -> Shard | None:
    """The shard whose slice failed, by the stored plan of the job (or of the backfill range
    the request names): None for the job's own chain, or when it cannot be told."""
    if request.shard is None:
        return None
    job_id = relay.job.job_id
    if request.from_position is not None and request.to_position is not None:
        job_id = range_job_id(job_id, request.from_position, request.to_position)
    try:
        plan = stored_plan(relay.store, job_id)
    except RelayError:
        return None
    if plan is None or request.shard >= plan.count:
        return None
    return plan.shard(job_id, request.shard)


def _what(shard: Shard | None) -> str:
    return str(shard) if shard else "job"


def _shard(request: InvocationRequest, job: JobConfig, relay: Relay) -> Shard | None:
    """The shard a slice request runs (of `job`: the job, or a backfill range of it, which has
    a plan of its own in its own record), None for a job of one chain."""
    if request.shard is None:
        return None
    if job.shards > 1 and request.from_position is not None and request.to_position is None:
        raise ConfigError(
            f"a backfill of job {job.job_id!r}'s shard {request.shard} needs 'to': every "
            "shard of a range copies up to the same end (the range's records are named after it)",
            hint='send the same "from" and "to" to each shard, or leave "shard" out to start '
            "them all",
        )
    if job.shards == 1:
        raise ConfigError(
            f"job {job.job_id!r} is not sharded (shards = 1): there is no shard {request.shard}",
            hint="leave 'shard' out, or deploy the job with shards > 1 (ESDB_RELAY_SHARDS)",
        )
    plan = _plan(job, relay)
    if request.shard >= plan.count:
        raise ConfigError(
            f"job {job.job_id!r} has {plan.count} shards (0-{plan.count - 1}), not shard "
            f"{request.shard}",
            hint="send a shard index below the job's shard count, or leave 'shard' out",
        )
    return plan.shard(job.job_id, request.shard)


def _plan(job: JobConfig, relay: Relay) -> ShardPlan:
    """The job's stored plan, or one planned now and fixed in its record."""
    plan = relay.shard_plan(job)
    assert plan is not None  # job.shards > 1
    return plan


def _fan_out(job: JobConfig, relay: Relay, request: InvocationRequest) -> InvocationResponse:
    """A sharded job's tick (or backfill range: `job` is then the range's, `request` its
    pinned 'from' and 'to'): fix the plan, then start each shard's chain that is not running
    (its generation raised under its own key, so an older chain's messages are dropped)."""
    plan = _plan(job, relay)
    started: list[dict[str, Any]] = []
    running: list[int] = []
    for shard in plan.shards(job.job_id):
        generation = None
        if not _chain_running(relay, shard.key):
            generation = _chain_generation(relay, InvocationRequest(), shard.key)
        if generation is None:  # running, or another invocation holds the shard's lease
            running.append(shard.index)
            continue
        message = request.model_copy(
            update={"shard": shard.index, "chained": True, "generation": generation}
        )
        started.append(message.payload())
    return InvocationResponse(
        action="slice",
        job_id=job.job_id,
        status="ok",
        next_action="continue" if started else "stop",
        fan_out=started,
        result={
            "shards": plan.count,
            "started": [r["shard"] for r in started],
            "running": running,
        },
    )


def _run_until_stopped(
    relay: Relay,
    job: JobConfig,
    clock: InvocationClock,
    start_after: int | None,
    stop_at: int | None,
    dry_run: bool,
    shard: Shard | None = None,
) -> SliceResult:
    """One slice that ends before the platform stops the invocation, under a lease that ends
    when the platform stops it: a killed slice leaves no lease behind."""
    sharded = {"shard": shard} if shard is not None else {}  # Relay.run_once(shard=)
    left = clock.seconds_left(job.budget.startup_margin_seconds)
    if left is None:
        return relay.run_once(
            None, start_after=start_after, stop_at=stop_at, dry_run=dry_run, job=job, **sharded
        )
    store = relay.store
    relay.store = LeasesUntil(store, datetime.now(UTC) + timedelta(seconds=max(0.0, left)))
    bounded = job.model_copy(
        update={"lease_ttl_seconds": max(1.0, min(job.lease_ttl_seconds, left))}
    )
    try:
        return relay.run_once(
            clock.seconds_left(job.budget.startup_margin_seconds),
            start_after=start_after,
            stop_at=stop_at,
            dry_run=dry_run,
            job=bounded,
            **sharded,
        )
    finally:
        relay.store = store


def _generation(relay: Relay, job_id: str) -> int:
    checkpoint = relay.store.load(job_id)
    return checkpoint.chain if checkpoint else 0


def _chain_generation(relay: Relay, request: InvocationRequest, job_id: str) -> int | None:
    """The generation the next request is sent under, or None when it must not be sent: a
    chained slice goes on under its own generation unless another chain replaced it during the
    slice; any other slice starts a chain, raising the job's generation so that messages of an
    earlier chain are dropped when they arrive."""
    if request.chained:
        ours = request.generation or 0
        return ours if _generation(relay, job_id) == ours else None
    store = relay.store
    try:
        lease = store.acquire(job_id, relay.owner, CHAIN_LEASE_SECONDS)
    except LeaseLostError:
        return None  # another invocation works on the job: it chains, not this one
    try:
        checkpoint = store.load(job_id) or Checkpoint(job_id=job_id)
        stored = store.commit(lease, checkpoint.model_copy(update={"chain": checkpoint.chain + 1}))
    finally:
        store.release(lease)
    return stored.chain


def _skipped(job: JobConfig, why: str) -> InvocationResponse:
    return InvocationResponse(
        action="slice",
        job_id=job.job_id,
        status="ok",
        next_action="stop",
        error=None,
        result={"skipped": why},
    )


def _chain_running(relay: Relay, key: str) -> bool:
    """A chain of slices copies this job (or shard) now: its newest slice ended this recently,
    behind the tail, without error."""
    last = relay.store.history(key, limit=1)
    if not last or last[0].caught_up or last[0].error or last[0].stopped:
        return False
    age = (datetime.now(UTC) - last[0].finished_at).total_seconds()
    return age < CHAIN_ACTIVE_SECONDS


def _status(job: JobConfig, progress: Progress) -> InvocationResponse:
    return InvocationResponse(
        action="status",
        job_id=job.job_id,
        status="ok",
        next_action="stop",
        result=progress.model_dump(mode="json"),
    )


def failure_response(error: RelayError) -> dict[str, Any]:
    """The result an HTTP trigger answers a failed slice with: the error and, when the relay
    attached it, whether the job is stalled (failing_slices, last_error)."""
    return {"status": "failed", "next_action": "stop", "error": str(error), **(error.details or {})}


def _slice_figures(
    result: SliceResult, liveness: Liveness | None, *, dry_run: bool = False
) -> dict[str, Any]:
    # stalled / failing_slices / last_error: a job that keeps failing says so in every result.
    # `totals`: the invocation's records read = copied + skipped + filtered + dead-lettered.
    totals = RunTotals.of(result, dry_run=dry_run)
    return {
        **asdict(result),
        "totals": totals.model_dump(mode="json"),
        **(liveness.model_dump() if liveness else {}),
    }

"""The cutover's report (JSON and Markdown) and its exit codes."""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from core.config_files import read_config_file
from core.errors import ConfigError
from core.tools.subscriptions import GroupPlan
from core.tools.verify import VerifyReport

Outcome = Literal["completed", "refused", "timed_out", "failed", "aborted", "error"]


STREAMS_SHOWN = 5


EXIT_COMPLETED = 0


EXIT_CHECK_FAILED = 1


EXIT_ERROR = 2


EXIT_NOT_CAUGHT_UP = 3


EXIT_ABORTED = 4


class CutoverOptions(BaseModel):
    wait: bool = Field(False, description="wait for the relay to catch up instead of refusing")
    lag_timeout: float = Field(600.0, gt=0, description="seconds to wait for lag 0 (with wait)")
    quiet_seconds: float = Field(30.0, gt=0, description="seconds without writes = stopped")
    quiet_timeout: float = Field(1800.0, gt=0, description="seconds to wait for the quiet")
    copy_timeout: float = Field(600.0, gt=0, description="seconds to wait for the final copy")
    poll_seconds: float = Field(1.0, gt=0, description="how often the source is polled")
    run_relay: bool = Field(False, description="run the relay's slices here during the cutover")
    sample: int | None = Field(None, ge=1, description="verify this many streams, None = all")
    seed: int = 0
    verify_workers: int = Field(1, ge=1)
    checkpoints_file: Path | None = Field(None, description="catch-up checkpoints to translate")
    apply_subscriptions: bool = False
    report_dir: Path = Path(".")


class ShardLag(BaseModel):
    """One shard of a sharded job, as the lag was measured."""

    index: int
    checkpoint_position: int | None
    pending_events: int | None  # None: not counted (estimated past the cap, unknown)
    caught_up: bool


class Lag(BaseModel):
    checkpoint_position: int | None  # None = nothing copied yet; a sharded job's lowest shard's
    head_position: int
    lag_bytes: int
    pending_events: int = Field(description="replicable records after the checkpoint")
    pending_capped: bool = Field(False, description="at least pending_events (scan was capped)")
    shards: list[ShardLag] = Field(
        default_factory=list, description="a sharded job: caught up only when every shard is"
    )

    @property
    def caught_up(self) -> bool:
        return self.pending_events == 0 and all(s.caught_up for s in self.shards)

    def describe(self) -> str:
        more = "at least " if self.pending_capped else ""
        behind = [s for s in self.shards if not s.caught_up]
        shards = ""
        if behind:
            shards = "; shards not caught up: " + ", ".join(
                f"{s.index} ({'?' if s.pending_events is None else f'{s.pending_events:,}'})"
                for s in behind
            )
        return (
            f"{more}{self.pending_events:,} event(s) not copied yet "
            f"({self.lag_bytes:,} bytes of $all between the checkpoint and the head){shards}"
        )


class CutoverShard(BaseModel):
    """A sharded job's shard when the final copy was done."""

    index: int
    key: str
    checkpoint_position: int | None
    events_written: int
    events_read: int


class QuietWatch(BaseModel):
    """What the watch for stopped writers saw."""

    quiet_seconds: float
    start_position: int
    final_position: int
    last_write_position: int | None = None  # the last replicable record seen during the watch
    writes_seen: int = 0
    writes_resumed: int = Field(0, description="times writes arrived after a quiet poll")
    recent_streams: list[str] = Field(default_factory=list)
    waited_seconds: float = 0.0
    quiet_for: float = 0.0


class StepRecord(BaseModel):
    name: str
    status: Literal["ok", "failed"]
    started_at: datetime
    finished_at: datetime
    detail: str = ""


class CutoverReport(BaseModel):
    job_id: str
    outcome: Outcome = "error"
    exit_code: int = EXIT_ERROR
    message: str = ""
    started_at: datetime
    finished_at: datetime | None = None
    source: str = Field(description="source endpoint (scheme and hosts)")
    target: str = Field(description="target endpoint (scheme and hosts)")
    options: dict = Field(default_factory=dict)
    steps: list[StepRecord] = Field(default_factory=list)
    lag_at_start: Lag | None = None
    quiet: QuietWatch | None = None
    source_head: int | None = None
    checkpoint_position: int | None = None
    target_head: int | None = None
    events_written_total: int | None = Field(None, description="by the job, all slices")
    events_read_total: int | None = None
    events_copied_during_cutover: int | None = None
    shards: list[CutoverShard] = Field(
        default_factory=list,
        description="a sharded job's shards (the totals above are their sums, the checkpoint "
        "their lowest); global order is not kept across shards",
    )
    verify: VerifyReport | None = None
    writes_after_quiet: int | None = None
    persistent_subscriptions: list[GroupPlan] = Field(default_factory=list)
    persistent_subscriptions_applied: bool = False
    catch_up_checkpoints: list[dict] = Field(default_factory=list)
    catch_up_file: str | None = None
    catch_up_errors: int = 0
    next_steps: list[str] = Field(default_factory=list)
    report_files: list[str] = Field(default_factory=list)


def write_reports(report: CutoverReport, directory: Path) -> list[Path]:
    """report.md and report.json, named after the job and the start time (to the second; a
    second report of the same second gets `-2`, and so on, rather than replacing the first).
    Both are written to temporary files first and then renamed into place, so a report is
    whole or absent: never a half-written file, nor a JSON report without its markdown one."""
    directory.mkdir(parents=True, exist_ok=True)
    job = re.sub(r"[^A-Za-z0-9_.-]+", "_", report.job_id)
    stamp = report.started_at.strftime("%Y%m%dT%H%M%SZ")
    for n in itertools.count(1):
        base = directory / f"cutover-{job}-{stamp}{'' if n == 1 else f'-{n}'}"
        paths = [base.with_suffix(".md"), base.with_suffix(".json")]
        if not any(p.exists() for p in paths):
            break
    report.report_files = [str(p) for p in paths]
    texts = [report_markdown(report), report.model_dump_json(indent=2) + "\n"]
    temporary: list[Path] = []
    try:
        for path, text in zip(paths, texts, strict=True):
            with tempfile.NamedTemporaryFile(
                "w", encoding="utf-8", dir=directory, prefix=f".{path.name}.", delete=False
            ) as file:
                temporary.append(Path(file.name))
                file.write(text)
        for written, path in zip(temporary, paths, strict=True):
            os.replace(written, path)
    finally:
        for written in temporary:
            written.unlink(missing_ok=True)
    return paths


def not_started(
    reason: str, *, job_id: str | None, options: dict, started_at: datetime | None = None
) -> CutoverReport:
    """The report of a cutover refused before its first step (the configuration given to it
    is wrong): nothing was checked, stopped or changed, and the clients stay on the source."""
    now = datetime.now(UTC)
    return CutoverReport(
        job_id=job_id or "unknown-job",
        outcome="error",
        exit_code=EXIT_ERROR,
        message=f"the cutover did not start, nothing was done: {reason}",
        started_at=started_at or now,
        finished_at=now,
        source="-",
        target="-",
        options=options,
        next_steps=[
            "keep the clients on the source: nothing was checked, stopped or changed",
            "fix the configuration as the message says (ESDB_RELAY_* env vars, --config file, "
            "options), then run cutover again",
        ],
    )


def configured_job_id(file: Path | None) -> str | None:
    """The job id a configuration names when it can be read, the env var over the file: the
    name of the report of a cutover whose configuration as a whole is wrong."""
    value = next((v for k, v in os.environ.items() if k.upper() == "ESDB_RELAY_JOB_ID"), None)
    if not value and file is not None:
        try:
            value = read_config_file(file).get("job_id")
        except (ConfigError, OSError):
            return None
    return str(value) if value else None


def read_translated(path: Path) -> list[dict]:
    if path.suffix.lower() == ".csv":
        return [dict(r) for r in csv.DictReader(path.read_text(encoding="utf-8").splitlines())]
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def position_text(value: int | None) -> str:
    return "start of $all" if value is None else f"{value:,}"


def report_markdown(report: CutoverReport) -> str:
    lines = [
        f"# Cutover report: job `{report.job_id}`",
        "",
        f"**Outcome: {report.outcome}** (exit code {report.exit_code}). {report.message}",
        "",
        "| | |",
        "|---|---|",
        f"| source | `{report.source}` |",
        f"| target | `{report.target}` |",
        f"| started | {report.started_at.isoformat()} |",
        f"| finished | {report.finished_at.isoformat() if report.finished_at else '-'} |",
        f"| source `$all` head | {optional(report.source_head)} |",
        f"| relay checkpoint | {optional(report.checkpoint_position)} |",
        f"| target `$all` head | {optional(report.target_head)} |",
        f"| records written by the job, all slices (events, stream metadata, deletes) | "
        f"{optional(report.events_written_total)} |",
        f"| records copied during the cutover | {optional(report.events_copied_during_cutover)} |",
    ]
    if report.quiet:
        q = report.quiet
        lines.append(
            f"| writes seen while watching for quiet | {q.writes_seen:,} "
            f"(resumed {q.writes_resumed} time(s)) |"
        )
    if report.writes_after_quiet is not None:
        lines.append(f"| writes after the quiet period | {report.writes_after_quiet:,} |")
    if report.shards:
        lines += [
            "",
            f"## Shards ({len(report.shards)})",
            "",
            "Each shard copied its own streams in their order; global order is not kept across "
            "shards. The relay checkpoint above is the lowest shard's.",
            "",
            "| shard | key | checkpoint | records written | records read |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {s.index} | `{s.key}` | {optional(s.checkpoint_position)} | "
            f"{s.events_written:,} | {s.events_read:,} |"
            for s in report.shards
        ]
    lines += ["", "## Steps", "", "| step | status | started | finished | detail |"]
    lines.append("|---|---|---|---|---|")
    for s in report.steps:
        lines.append(
            f"| {s.name} | {s.status} | {s.started_at.strftime('%H:%M:%S')} | "
            f"{s.finished_at.strftime('%H:%M:%S')} | {cell(s.detail)} |"
        )
    if report.verify:
        v = report.verify
        scope = f"sample of {v.streams_checked:,} (seed {v.seed})" if v.sample else "full"
        lines += [
            "",
            "## Verify",
            "",
            f"{'equal' if v.ok else 'DIFFERENT'} ({scope}): {v.streams_checked:,} streams checked, "
            f"{v.streams_equal:,} equal, {v.streams_differing:,} differing, "
            f"{v.extra_streams:,} extra on the target; {v.events_compared:,} events compared; "
            f"{v.differences_total:,} difference(s).",
        ]
        if v.differences and v.shards is not None:
            lines += ["", "| shard | stream | kind | detail |", "|---|---|---|---|"]
            lines += [
                f"| {'-' if d.shard is None else d.shard} | `{d.stream}` | {d.kind.value} | "
                f"{cell(d.detail)} |"
                for d in v.differences[:50]
            ]
        elif v.differences:
            lines += ["", "| stream | kind | detail |", "|---|---|---|"]
            lines += [
                f"| `{d.stream}` | {d.kind.value} | {cell(d.detail)} |" for d in v.differences[:50]
            ]
    if report.persistent_subscriptions:
        applied = "applied" if report.persistent_subscriptions_applied else "not applied"
        lines += [
            "",
            f"## Persistent subscriptions ({applied})",
            "",
            "| stream | group | action | source checkpoint | target start | note |",
            "|---|---|---|---|---|---|",
        ]
        for p in report.persistent_subscriptions:
            lines.append(
                f"| `{p.stream}` | `{p.group}` | {p.action} | {p.source_checkpoint or '-'} | "
                f"{p.start_text or '-'} | {cell(p.reason or ', '.join(p.changes))} |"
            )
    if report.catch_up_file:
        lines += [
            "",
            "## Catch-up subscription checkpoints",
            "",
            f"Translated into `{report.catch_up_file}`.",
            "",
            "| name | source | target | error |",
            "|---|---|---|---|",
        ]
        for row in report.catch_up_checkpoints:
            lines.append(checkpoint_row(row))
    lines += ["", "## Next steps", ""]
    lines += [f"{n}. {step}" for n, step in enumerate(report.next_steps, 1)]
    return "\n".join(lines) + "\n"


def checkpoint_row(row: dict) -> str:
    if row.get("kind") == "stream" or row.get("stream"):
        source = f"`{row.get('stream')}` @ {row.get('revision')}"
        target = row.get("target_revision")
    else:
        source = f"$all @ {row.get('position')}"
        target = row.get("target_position")
    target_text = "start" if target in (None, "") and not row.get("error") else target
    return (
        f"| {cell(str(row.get('name') or ''))} | {source} | {target_text or '-'} | "
        f"{cell(str(row.get('error') or ''))} |"
    )


def optional(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")

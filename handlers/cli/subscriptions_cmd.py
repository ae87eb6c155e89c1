"""`esdb-relay translate` and `esdb-relay migrate-subscriptions`.

translate: a source `$all` commit position (or a stream revision) to the target's, to move a
catch-up subscription: pass the result to `subscribe_to_all(commit_position=...)` /
`subscribe_to_stream(stream_position=...)` on the target ("start" = subscribe from the start).

migrate-subscriptions: re-create the source's persistent subscriptions on the target at their
translated positions; a dry run (a plan) unless --apply.

Exit codes: 0 done, 1 something could not be translated or migrated, 2 bad usage or
configuration. Connection strings are never printed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.errors import RelayError
from core.tools.subscriptions import GroupPlan
from core.tools.subscriptions import migrate_subscriptions as run_migrate
from core.tools.translate import START, translate_file, translate_position, translate_stream
from handlers.cli.common import (
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    ConfigOption,
    connections,
    err,
    load_job,
)


def translate(
    position: str | None = typer.Argument(
        None,
        help="Source $all commit position the subscription processed last, or 'start' if it "
        "has processed nothing yet.",
        show_default=False,
    ),
    config: Path | None = ConfigOption,
    stream: str | None = typer.Option(
        None, "--stream", help="Translate a stream revision of this source stream instead."
    ),
    revision: str | None = typer.Option(
        None,
        "--revision",
        help="The stream revision the subscription processed last, or 'start'.",
        show_default=False,
    ),
    file: Path | None = typer.Option(
        None,
        "--file",
        help="Checkpoints to translate: JSON lines or CSV (.csv) of name, kind (all|stream), "
        "stream, position|revision.",
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Where --file's translated checkpoints go (same format)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Map a source checkpoint to the target's, to move a catch-up subscription.

    The target value is the last replicated event at or before the source checkpoint:
    subscribe from it (exclusive) and the subscription receives exactly the events after the
    old checkpoint. "start" means subscribe from the beginning.
    """
    out = Console(highlight=False)
    modes = [position is not None, stream is not None or revision is not None, file is not None]
    if sum(modes) != 1:
        err.print(
            "[red]give one of: a POSITION, --stream with --revision, or --file with --output[/]"
        )
        raise typer.Exit(EXIT_ERROR)
    if (stream is None) != (revision is None):
        err.print("[red]--stream and --revision go together[/]")
        raise typer.Exit(EXIT_ERROR)
    if file is not None and output is None:
        err.print("[red]--file needs --output[/]")
        raise typer.Exit(EXIT_ERROR)
    if file is not None and not file.is_file():
        err.print(f"[red]no such file: {escape(str(file))}[/]")
        raise typer.Exit(EXIT_ERROR)
    checkpoint = _checkpoint(position, "POSITION") if position is not None else None
    stream_revision = _checkpoint(revision, "--revision") if revision is not None else None
    job = load_job(config)
    try:
        with connections(job) as (source, target):
            if file is not None:
                assert output is not None
                rows, errors = translate_file(job, source, target, file, output)
                summary = {"rows": rows, "errors": errors, "output": str(output)}
                if json_out:
                    sys.stdout.write(json.dumps(summary) + "\n")
                else:
                    out.print(f"translated {rows - errors} of {rows} checkpoint(s) into {output}")
                    if errors:
                        out.print(f"[red]{errors} row(s) could not be translated[/] (see 'error')")
                raise typer.Exit(EXIT_FAILED if errors else EXIT_OK)
            if stream is not None:
                result = translate_stream(job, source, target, stream, stream_revision)
            else:
                result = translate_position(job, source, target, checkpoint)
    except RelayError as e:
        err.print(f"[red]cannot translate:[/] {escape(str(e))}", soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None
    if json_out:
        sys.stdout.write(result.model_dump_json() + "\n")
        return
    table = Table(title="translated checkpoint", show_header=False)
    target_value = START if result.target is None else f"{result.target}"
    source_value = START if result.source is None else f"{result.source}"
    if result.kind == "all":
        table.add_row("source $all position", source_value)
        table.add_row("target $all position", target_value)
        hint = (
            "subscribe_to_all(commit_position=None)"
            if result.target is None
            else f"subscribe_to_all(commit_position={result.target})"
        )
    else:
        table.add_row("stream", escape(result.stream or ""))
        table.add_row("source revision", source_value)
        table.add_row("target revision", target_value)
        hint = (
            "subscribe_to_stream(..., stream_position=None)"
            if result.target is None
            else f"subscribe_to_stream(..., stream_position={result.target})"
        )
    table.add_row("method", result.method)
    if result.anchor_event_id:
        table.add_row("resumes after event", result.anchor_event_id)
    out.print(table)
    out.print(f"on the target: {hint}")


def _checkpoint(value: str, name: str) -> int | None:
    """A checkpoint typed on the command line: a non-negative integer, or 'start' (None)."""
    if value.strip().lower() == START:
        return None
    try:
        number = int(value.replace(",", "").replace("_", ""))
    except ValueError:
        number = -1
    if number < 0:
        err.print(
            f"[red]{name} {escape(value)!r} is neither a non-negative integer nor 'start'[/]",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_ERROR)
    return number


def migrate_subscriptions(
    config: Path | None = ConfigOption,
    apply: bool = typer.Option(
        False, "--apply", help="Create/update the groups on the target (default: dry run)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Re-create every persistent subscription of the source on the target, at its translated
    position with the same settings. Dry run unless --apply; running it again is a no-op."""
    out = Console(highlight=False)
    job = load_job(config)
    try:
        with connections(job) as (source, target):
            plans = run_migrate(job, source, target, apply=apply)
    except RelayError as e:
        err.print(f"[red]migrate-subscriptions failed:[/] {escape(str(e))}", soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None
    failed = any(p.action == "error" for p in plans)
    if json_out:
        payload = {"applied": apply, "groups": [p.model_dump(mode="json") for p in plans]}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)
    _print_plan(out, plans, apply)
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


_STYLE = {
    "create": "green",
    "update": "yellow",
    "unchanged": "dim",
    "manual": "magenta",
    "error": "red",
}


def _print_plan(out: Console, plans: list[GroupPlan], applied: bool) -> None:
    if not plans:
        out.print("the source has no persistent subscriptions")
        return
    title = "persistent subscriptions" + ("" if applied else " (dry run)")
    table = Table(title=title)
    table.add_column("group", overflow="fold")
    table.add_column("stream", overflow="fold")
    table.add_column("action")
    table.add_column("source checkpoint")
    table.add_column("target start")
    table.add_column("strategy")
    table.add_column("details", overflow="fold", ratio=2)
    for p in plans:
        details = "; ".join([*p.changes, *([p.reason] if p.reason else [])])
        style = _STYLE.get(p.action, "")
        table.add_row(
            escape(p.group),
            escape(p.stream),
            f"[{style}]{p.action}[/]",
            escape(p.source_checkpoint or f"never (start {p.source_start})"),
            escape(_start_label(p)),
            escape(p.settings.consumer_strategy if p.settings else ""),
            escape(details),
        )
    out.print(table)
    counts: dict[str, int] = {}
    for p in plans:
        counts[p.action] = counts.get(p.action, 0) + 1
    summary = ", ".join(f"{n} {a}" for a, n in counts.items())
    if applied:
        out.print(f"applied: {summary}")
    else:
        out.print(f"plan: {summary}; run again with --apply to create/update the groups")


def _start_label(plan: GroupPlan) -> str:
    if plan.action in ("manual", "error"):
        return ""
    if plan.start is None:
        return "end"
    if plan.start == 0:
        return "start"
    return plan.start_text

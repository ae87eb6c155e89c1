"""`esdb-relay projections list | export | create`.

list: the source's projections (custom and system) with mode, status, emit settings and
progress, and what the migration means for each; plus whether the target's system projections
run (the links the relay does not copy appear on the target only once they do).
export: each custom continuous projection's query as a .js file and a manifest.json.
create: re-create them on the target, stopped, for review. A dry run (a plan) unless --apply;
running it again is a no-op; a projection defined differently on the target is a conflict,
left as is unless --update.

Exit codes: 0 done, 1 a conflict or an error, or a side that could not be checked (the
target's system projections), 2 bad usage or configuration.
Connection strings are never printed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.errors import ConfigError, RelayError, TransientError
from core.eventstore import EventStore
from core.tools.projections import (
    CreateRow,
    ProjectionInfo,
    SystemStatus,
    apply_create,
    custom_definitions,
    export_definitions,
    list_projections,
    load_export,
    plan_create,
    system_projections,
)
from handlers.cli.common import (
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    ConfigOption,
    connection,
    err,
    load_job,
)

projections_app = typer.Typer(
    rich_markup_mode=None,  # plain help: no `<bool>` beside a flag
    help="Custom and system projections: list them, export their definitions, re-create them "
    "on the target (stopped, for review).",
    no_args_is_help=True,
)


def _fail(err: Console, what: str, error: RelayError) -> typer.Exit:
    if isinstance(error, ConfigError):
        err.print(f"[red]{what}:[/] {escape(str(error))}", soft_wrap=True)
        return typer.Exit(EXIT_ERROR)
    if isinstance(error, TransientError):
        err.print(
            f"[red]{what}:[/] {escape(error.message)} — the node did not answer; check that it "
            "is up and reachable from here (esdb-relay preflight checks the network path)",
            soft_wrap=True,
        )
    else:
        err.print(f"[red]{what}:[/] {escape(str(error))}", soft_wrap=True)
    return typer.Exit(EXIT_FAILED)


def _system_report(target: EventStore) -> list[SystemStatus] | str:
    try:
        return system_projections(target)
    except TransientError as e:
        return f"{e.message} (the node did not answer)"
    except RelayError as e:
        return str(e)


@projections_app.command("list")
def list_command(
    config: Path | None = ConfigOption,
    json_out: bool = typer.Option(False, "--json", help="Print the lists as JSON."),
) -> None:
    """The source's projections and what the migration means for each."""
    out = Console(highlight=False)
    job = load_job(config)
    try:
        with connection(job, "source") as source:
            rows = list_projections(source)
    except RelayError as e:
        raise _fail(err, "cannot list the source's projections", e) from None
    try:
        with connection(job, "target") as target:
            system = _system_report(target)
    except RelayError as e:
        system = str(e)
    if json_out:
        payload = {
            "source": [r.model_dump(mode="json") for r in rows],
            "target_system_projections": (
                {"error": system}
                if isinstance(system, str)
                else [s.model_dump(mode="json") for s in system]
            ),
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        raise typer.Exit(_unchecked(system))
    _print_list(out, rows)
    _print_system(out, system, {r.name for r in rows if r.system and _running(r.status)})
    raise typer.Exit(_unchecked(system))


def _unchecked(system: list[SystemStatus] | str) -> int:
    """Exit 1 when the target's system projections could not be checked: the listing is only
    half an answer, and a script reading the exit code must not take it as a whole one."""
    if isinstance(system, str):
        err.print(
            "[red]the target could not be checked[/] (exit 1): fix the target connection "
            "(esdb-relay preflight checks the network path) and run again",
            soft_wrap=True,
        )
        return EXIT_FAILED
    return EXIT_OK


def _print_list(out: Console, rows: list[ProjectionInfo]) -> None:
    table = Table(title="source projections")
    for column in ("name", "mode", "status", "emit", "track emitted", "position", "progress"):
        table.add_column(column, overflow="fold")
    table.add_column("what the migration means", overflow="fold", ratio=3)

    def flag(value: bool | None) -> str:
        return "?" if value is None else ("yes" if value else "no")

    for r in rows:
        advice = escape(r.advice)
        if r.definition_error:
            advice += f" [red]{escape(r.definition_error)}[/]"
        table.add_row(
            escape(r.name),
            r.mode,
            escape(r.status),
            "yes" if r.system else flag(r.emit_enabled),
            "" if r.system else flag(r.track_emitted_streams),
            escape(r.position),
            f"{r.progress:.1f}%",
            advice,
        )
    out.print(table)
    custom = [r for r in rows if not r.system and r.mode == "Continuous"]
    out.print(
        f"{len(custom)} custom continuous projection(s) to re-create on the target: "
        "esdb-relay projections export --out DIR, then projections create --from DIR"
    )


def _running(status: str) -> bool:
    return status.startswith("Running")


def _print_system(
    out: Console, system: list[SystemStatus] | str, source_running: set[str] | None = None
) -> None:
    if isinstance(system, str):
        out.print(f"[red]target system projections: not checked:[/] {escape(system)}")
        return
    table = Table(title="target system projections (they re-create the links)")
    table.add_column("name")
    table.add_column("status")
    table.add_column("builds", overflow="fold")
    for s in system:
        style = "green" if s.running else "yellow"
        table.add_row(escape(s.name), f"[{style}]{escape(s.status)}[/]", escape(s.builds))
    out.print(table)
    stopped = [s.name for s in system if not s.running]
    if source_running is not None:
        needed = [name for name in stopped if name in source_running]
        if needed:
            out.print(
                f"[yellow]running on the source but not on the target: {', '.join(needed)}[/] "
                "— their links are not replicated; enable them on the target (UI or "
                "enable_projection) so it builds its own"
            )
        else:
            out.print("every system projection running on the source runs on the target")
    elif stopped:
        out.print(
            f"[yellow]not running on the target: {', '.join(stopped)}[/] — links ($ce-, $et- ...) "
            "are not replicated and appear on the target only once these run: enable the ones "
            "the source uses (UI or enable_projection)"
        )


@projections_app.command("export")
def export_command(
    out_dir: Path = typer.Option(..., "--out", help="Directory for the .js files and manifest."),
    config: Path | None = ConfigOption,
) -> None:
    """Write each custom continuous projection's exact query (.js) and a manifest.json."""
    out = Console(highlight=False)
    if out_dir.exists() and not out_dir.is_dir():
        err.print(f"[red]--out {escape(str(out_dir))} is a file; give a directory[/]")
        raise typer.Exit(EXIT_ERROR)
    job = load_job(config)
    try:
        with connection(job, "source") as source:
            definitions = custom_definitions(source)
    except RelayError as e:
        raise _fail(err, "cannot export the projections", e) from None
    manifest = export_definitions(definitions, out_dir)
    table = Table(title=f"exported to {escape(str(out_dir))}")
    for column in ("name", "file", "emit", "track emitted"):
        table.add_column(column, overflow="fold")
    for e in manifest.projections:
        table.add_row(
            escape(e.name),
            escape(e.file),
            "yes" if e.emit_enabled else "no",
            "yes" if e.track_emitted_streams else "no",
        )
    out.print(table)
    out.print(f"{len(manifest.projections)} projection(s); manifest: {out_dir / 'manifest.json'}")


_STYLE = {
    "create": "green",
    "update": "yellow",
    "finish": "green",
    "unchanged": "dim",
    "conflict": "magenta",
    "error": "red",
}


@projections_app.command("create")
def create_command(
    config: Path | None = ConfigOption,
    from_dir: Path | None = typer.Option(
        None, "--from", help="An export directory (default: read the source's definitions)."
    ),
    apply: bool = typer.Option(False, "--apply", help="Create them (default: dry run, a plan)."),
    update: bool = typer.Option(
        False, "--update", help="Overwrite a different query/emit setting on the target."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Re-create the custom projections on the target, stopped, for review."""
    out = Console(highlight=False)
    if from_dir is not None and not from_dir.is_dir():
        err.print(f"[red]--from {escape(str(from_dir))} is not a directory[/]")
        raise typer.Exit(EXIT_ERROR)
    job = load_job(config)
    try:
        if from_dir is not None:
            definitions = load_export(from_dir)
        else:
            with connection(job, "source") as source:
                definitions = custom_definitions(source)
        with connection(job, "target") as target:
            rows = plan_create(target, definitions, update=update)
            if apply:
                rows = apply_create(target, rows)
            system = _system_report(target)
    except RelayError as e:
        raise _fail(err, "projections create failed", e) from None
    failed = any(r.action in ("conflict", "error") for r in rows)
    if json_out:
        payload = {
            "applied": apply,
            "projections": [r.model_dump(mode="json", exclude={"definition"}) for r in rows],
            "target_system_projections": (
                {"error": system}
                if isinstance(system, str)
                else [s.model_dump(mode="json") for s in system]
            ),
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        raise typer.Exit(EXIT_FAILED if failed else _unchecked(system))
    _print_plan(out, rows, apply)
    _print_system(out, system)
    raise typer.Exit(EXIT_FAILED if failed else _unchecked(system))


def _print_plan(out: Console, rows: list[CreateRow], applied: bool) -> None:
    if not rows:
        out.print("no custom continuous projections to create")
        return
    table = Table(title="projections on the target" + ("" if applied else " (dry run)"))
    for column in ("name", "action", "emit", "track emitted"):
        table.add_column(column, overflow="fold")
    table.add_column("details", overflow="fold", ratio=3)
    for r in rows:
        style = _STYLE.get(r.action, "")
        table.add_row(
            escape(r.name),
            f"[{style}]{r.action}[/]",
            "yes" if r.definition.emit_enabled else "no",
            "yes" if r.definition.track_emitted_streams else "no",
            escape(r.detail),
        )
    out.print(table)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.action] = counts.get(r.action, 0) + 1
    summary = ", ".join(f"{n} {a}" for a, n in counts.items())
    if applied:
        out.print(f"applied: {summary}; they are stopped: review, then enable each at cutover")
    else:
        out.print(f"plan: {summary}; nothing changed — run again with --apply to create them")

"""The source's projections, what a migration means for each, and re-creating them on the target.

What the relay does and does not copy (core.rules.classify): events a projection emits with
`emit()` are ordinary events in ordinary streams, so they are replicated like any other; links
(`$>` events, from `linkTo()` and from the system projections' `$ce-`/`$et-`/... streams) and
everything in `$`-streams are skipped. That includes the projections' own definitions
(`$projections-$all`, `$projections-<name>`), checkpoints and state. So on the target:
- the system projections re-create the links once they run there;
- every custom projection must be re-created by the team (this module does it, stopped, for
  review), so it can rebuild its state and the links it emits.

The gRPC API has no call that returns a projection's query. The server keeps each definition
as a `$ProjectionUpdated` event in `$projections-<name>` (ManagedProjection.PersistedState,
camelCase JSON), readable through the normal streams API by a user in `$admins` or `$ops`:
that is where the export reads it.

gRPC cannot create a projection stopped either (Create always starts it). To re-create one
without it ever processing an event on the target, `apply_create` creates it with a
placeholder query that reads a stream nobody writes, disables it, sets the real query
(Update keeps it stopped), then resets it so it starts from the beginning when enabled.
A run broken off half way leaves the placeholder, which the next run finishes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from core.errors import AccessDenied, ConfigError, PermanentError, RelayError
from core.eventstore import EventStore

REGISTRY_STREAM = "$projections-$all"
DEFINITION_PREFIX = "$projections-"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "esdb-relay-projections"
PLACEHOLDER_QUERY = (
    "// esdb-relay: placeholder while the projection is created stopped; replaced at once\n"
    "fromStream('$esdb-relay-placeholder').when({$init: function () { return {}; }});\n"
)
# What each system projection builds (the links the relay does not copy).
SYSTEM_PROJECTIONS = {
    "$by_category": "$ce-<category> streams (links to each event by stream category)",
    "$by_event_type": "$et-<type> streams (links to each event by event type)",
    "$stream_by_category": "$category-<category> streams (links to each stream's first event)",
    "$streams": "the $streams stream (links to each stream's first event)",
    "$by_correlation_id": "$bc-<correlation id> streams (links by $correlationId)",
}

Mode = Literal["Continuous", "OneTime", "Transient"]


class Definition(BaseModel):
    """What re-creates a projection: its query and the settings Create takes."""

    name: str
    query: str
    mode: str = "Continuous"
    emit_enabled: bool = False
    track_emitted_streams: bool = False

    def differences(self, other: Definition) -> list[str]:
        fields = ("query", "mode", "emit_enabled", "track_emitted_streams")
        return [f for f in fields if getattr(self, f) != getattr(other, f)]


class ProjectionInfo(BaseModel):
    name: str
    mode: str
    status: str
    system: bool
    emit_enabled: bool | None = None  # None when the definition could not be read
    track_emitted_streams: bool | None = None
    position: str = ""
    progress: float = 0.0
    definition_error: str | None = None
    advice: str


class SystemStatus(BaseModel):
    name: str
    status: str  # "missing" when the server does not list it
    running: bool
    builds: str


class ManifestEntry(BaseModel):
    name: str
    file: str
    mode: str = "Continuous"
    emit_enabled: bool = False
    track_emitted_streams: bool = False


class Manifest(BaseModel):
    format: str = MANIFEST_FORMAT
    version: int = 1
    note: str = (
        "Custom continuous projections exported by esdb-relay. Re-create them on the target "
        "with `esdb-relay projections create --from <this directory>` (created stopped)."
    )
    projections: list[ManifestEntry] = Field(default_factory=list)


Action = Literal["create", "unchanged", "conflict", "update", "finish", "error"]


class CreateRow(BaseModel):
    name: str
    action: Action
    detail: str = ""
    definition: Definition
    done: bool = False


# ----------------------------------------------------------------------- reading the source
def is_system(name: str) -> bool:
    return name.startswith("$")


def read_definition(store: EventStore, name: str) -> Definition | None:
    """The projection's definition from its `$projections-<name>` stream (None if absent)."""
    stream = DEFINITION_PREFIX + name
    try:
        last = store.read_stream_backwards(stream, None, 1)
    except AccessDenied as e:
        raise AccessDenied(
            f"{store.side}: reading {stream!r} was refused ({e.code})",
            e.code,
            hint="projection definitions are in system streams: connect as a user in $admins "
            "or $ops (the gRPC API has no other way to read a projection's query)",
        ) from None
    if not last:
        return None
    try:
        state = json.loads(last[0].data)
    except (ValueError, UnicodeDecodeError):
        raise PermanentError(f"{store.side}: {stream!r} does not hold a JSON definition") from None
    if not isinstance(state, dict) or not isinstance(state.get("query"), str):
        raise PermanentError(f"{store.side}: {stream!r} does not hold a projection definition")
    return Definition(
        name=name,
        query=state["query"],
        mode=str(state.get("mode") or "Continuous"),
        emit_enabled=bool(state.get("emitEnabled") or False),
        track_emitted_streams=bool(state.get("trackEmittedStreams") or False),
    )


def _advice(name: str, mode: str, emit: bool | None) -> str:
    if is_system(name):
        builds = SYSTEM_PROJECTIONS.get(name, "system streams")
        return (
            f"system projection: builds {builds}; links are not replicated, the target's own "
            f"{name} re-creates them once it runs there"
        )
    if mode != "Continuous":
        return f"{mode.lower()} query: nothing to migrate"
    emitted = (
        "emitted events are replicated (ordinary events); links it emits are not. "
        if emit
        else "its state and result are not replicated. "
    )
    return emitted + "Re-create this projection on the target (projections create)."


def list_projections(source: EventStore) -> list[ProjectionInfo]:
    """Every projection the source lists, custom ones with their definitions' settings."""
    rows: list[ProjectionInfo] = []
    for s in source.projection_statistics():
        name = s.name
        mode = s.mode
        emit = track = None
        error = None
        if not is_system(name) and mode != "Transient":
            try:
                definition = read_definition(source, name)
            except RelayError as e:
                error = str(e)
            else:
                if definition is not None:
                    emit, track = definition.emit_enabled, definition.track_emitted_streams
        rows.append(
            ProjectionInfo(
                name=name,
                mode=mode,
                status=s.status,
                system=is_system(name),
                emit_enabled=emit,
                track_emitted_streams=track,
                position=s.position,
                progress=s.progress,
                definition_error=error,
                advice=_advice(name, mode, emit),
            )
        )
    rows.sort(key=lambda r: (not r.system, r.name))
    return rows


def system_projections(store: EventStore) -> list[SystemStatus]:
    """Whether each system projection runs (the target needs them for the links)."""
    listed = {s.name: s.status for s in store.projection_statistics()}
    return [
        SystemStatus(
            name=name,
            status=listed.get(name, "missing"),
            running=listed.get(name, "").startswith("Running"),
            builds=builds,
        )
        for name, builds in SYSTEM_PROJECTIONS.items()
    ]


def custom_definitions(source: EventStore) -> list[Definition]:
    """The definitions of the source's custom continuous projections, by name."""
    definitions = []
    for s in source.projection_statistics():
        name, mode = s.name, s.mode
        if is_system(name) or mode != "Continuous":
            continue
        definition = read_definition(source, name)
        if definition is None:
            raise PermanentError(
                f"{source.side}: projection {name!r} has no definition in "
                f"{DEFINITION_PREFIX + name!r}"
            )
        definitions.append(definition)
    return sorted(definitions, key=lambda d: d.name)


# ----------------------------------------------------------------------- export / import
def _file_name(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "projection"
    candidate, n = f"{base}.js", 2
    while candidate.lower() in taken:
        candidate, n = f"{base}-{n}.js", n + 1
    taken.add(candidate.lower())
    return candidate


def export_definitions(definitions: list[Definition], out: Path) -> Manifest:
    """One `.js` file per projection holding its exact query, and `manifest.json`."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest()
    taken: set[str] = set()
    for d in definitions:
        file = _file_name(d.name, taken)
        (out / file).write_bytes(d.query.encode("utf-8"))
        manifest.projections.append(
            ManifestEntry(
                name=d.name,
                file=file,
                mode=d.mode,
                emit_enabled=d.emit_enabled,
                track_emitted_streams=d.track_emitted_streams,
            )
        )
    (out / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return manifest


def load_export(directory: Path) -> list[Definition]:
    """The definitions an export wrote (ConfigError saying what is wrong otherwise)."""
    path = directory / MANIFEST
    if not path.is_file():
        raise ConfigError(
            f"{path} not found",
            field="--from",
            hint="point --from at a directory written by `esdb-relay projections export`",
        )
    try:
        manifest = Manifest.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValidationError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"{path} is not a projections manifest: {str(e).splitlines()[0]}",
            field="--from",
            hint="re-run `esdb-relay projections export`, or fix the JSON by hand",
        ) from None
    if manifest.format != MANIFEST_FORMAT:
        raise ConfigError(
            f"{path}: format is {manifest.format!r}, not {MANIFEST_FORMAT!r}",
            field="--from",
            hint="point --from at a directory written by `esdb-relay projections export`",
        )
    definitions = []
    for entry in manifest.projections:
        file = directory / entry.file
        if Path(entry.file).name != entry.file or not file.is_file():
            raise ConfigError(
                f"{path}: the query file {entry.file!r} of projection {entry.name!r} is missing",
                field="--from",
                hint="each manifest entry names a .js file in the same directory",
            )
        if entry.mode != "Continuous":
            raise ConfigError(
                f"{path}: projection {entry.name!r} has mode {entry.mode!r}; only continuous "
                "projections can be re-created",
                field="--from",
                hint="remove the entry from the manifest",
            )
        if entry.track_emitted_streams and not entry.emit_enabled:
            raise ConfigError(
                f"{path}: projection {entry.name!r} tracks emitted streams without emit enabled",
                field="--from",
                hint="the server refuses that combination: set emit_enabled or drop the tracking",
            )
        query = file.read_bytes().decode("utf-8")
        definitions.append(
            Definition(
                name=entry.name,
                query=query,
                mode=entry.mode,
                emit_enabled=entry.emit_enabled,
                track_emitted_streams=entry.track_emitted_streams,
            )
        )
    return definitions


# ----------------------------------------------------------------------- create on the target
def plan_create(
    target: EventStore, definitions: list[Definition], *, update: bool
) -> list[CreateRow]:
    rows = []
    for d in definitions:
        try:
            rows.append(_plan_one(target, d, update=update))
        except RelayError as e:
            rows.append(CreateRow(name=d.name, action="error", detail=str(e), definition=d))
    return rows


def _plan_one(target: EventStore, wanted: Definition, *, update: bool) -> CreateRow:
    if is_system(wanted.name):
        return CreateRow(
            name=wanted.name,
            action="error",
            detail="system projections exist on every node; enable them instead",
            definition=wanted,
        )
    if not target.projection_statistics(wanted.name):
        return CreateRow(
            name=wanted.name, action="create", detail="created stopped", definition=wanted
        )
    existing = read_definition(target, wanted.name)
    if existing is None:
        return CreateRow(
            name=wanted.name,
            action="error",
            detail=f"listed by the target but {DEFINITION_PREFIX + wanted.name!r} is empty",
            definition=wanted,
        )
    if existing.query == PLACEHOLDER_QUERY:
        return CreateRow(
            name=wanted.name,
            action="finish",
            detail="an earlier run stopped half way; setting the query",
            definition=wanted,
        )
    differs = existing.differences(wanted)
    if not differs:
        return CreateRow(
            name=wanted.name, action="unchanged", detail="same definition", definition=wanted
        )
    detail = "differs on the target: " + ", ".join(differs)
    if "mode" in differs or "track_emitted_streams" in differs:
        # Update takes only the query and emit; the rest needs a delete and a new create.
        return CreateRow(
            name=wanted.name,
            action="conflict",
            detail=detail + " (not changeable by update: delete it on the target first)",
            definition=wanted,
        )
    if update:
        return CreateRow(
            name=wanted.name,
            action="update",
            detail=detail + "; updated and stopped",
            definition=wanted,
        )
    return CreateRow(
        name=wanted.name,
        action="conflict",
        detail=detail + " (left as is; --update overwrites the query and emit setting)",
        definition=wanted,
    )


def apply_create(target: EventStore, rows: list[CreateRow]) -> list[CreateRow]:
    """Carry out the plan; a failing projection is marked `error` and the others go on."""
    for row in rows:
        d = row.definition
        try:
            if row.action == "create":
                target.create_projection(
                    d.name,
                    PLACEHOLDER_QUERY,
                    emit=d.emit_enabled,
                    track=d.track_emitted_streams,
                )
            if row.action in ("create", "finish", "update"):
                target.disable_projection(d.name)
                target.update_projection(d.name, d.query, emit=d.emit_enabled)
            if row.action in ("create", "finish"):
                target.reset_projection(d.name)
        except RelayError as e:
            row.action, row.detail = "error", str(e)
            continue
        row.done = row.action in ("create", "finish", "update")
    return rows

"""A job configuration's errors as the user reads them: one line per problem, naming the
setting (as the env var, the file key and the payload key) and how to fix it, never the value."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    SettingsError,
)

from core.errors import ConfigError

ENV_PREFIX = "ESDB_RELAY_"

_FIXES: dict[str, str] = {
    "int_type": "use a whole number",
    "int_parsing": "use a whole number",
    "int_from_float": "use a whole number",
    "float_type": "use a number",
    "float_parsing": "use a number",
    "bool_type": "use true or false",
    "bool_parsing": "use true or false",
    "string_type": "use a text value",
    "list_type": "use a list",
    "literal_error": "use one of the values listed",
    "string_too_short": "use a non-empty value",
}


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(job)"


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class holding the field at ``loc[-1]``."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _field(model: type[BaseModel], loc: tuple[int | str, ...]) -> FieldInfo | None:
    names = [p for p in loc if isinstance(p, str)]
    holder = _model_at(model, tuple(names))
    return holder.model_fields.get(names[-1]) if holder and names else None


def _env_name(loc: tuple[int | str, ...]) -> str:
    return ENV_PREFIX + "__".join(str(p).upper() for p in loc if isinstance(p, str))


def _line(error: Any, model: type[BaseModel]) -> str:
    loc = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "relay_config":
        what, fix = ctx["problem"], ctx["fix"]
    elif kind == "missing":
        what = "required"
        fix = f"set it in the payload or config file, or env {_env_name(loc)}"
    elif kind == "extra_forbidden":
        what = "unknown setting"
        holder = _model_at(model, loc)
        valid = ", ".join(holder.model_fields) if holder else ""
        fix = "remove it or fix its spelling" + (f"; valid settings here: {valid}" if valid else "")
    else:
        msg = str(error["msg"])
        what = msg[:1].lower() + msg[1:]
        field = _field(model, loc)
        fix = _FIXES.get(kind) or (
            f"expected {field.description}" if field and field.description else "fix the value"
        )
    return f"{_path(loc)}: {what} — {fix}"


def format_validation_error(exc: ValidationError, model: type[BaseModel]) -> str:
    """One line per problem, ``field.path: what is wrong — how to fix``; never any input."""
    return "\n".join(
        _line(error, model)
        for error in exc.errors(include_url=False, include_input=False, include_context=True)
    )


def config_error(exc: ValidationError, model: type[BaseModel]) -> ConfigError:
    lines = format_validation_error(exc, model).splitlines()
    first = lines[0].split(":", 1)[0] if lines else None
    return ConfigError(
        "invalid job configuration:\n" + "\n".join(f"  {line}" for line in lines),
        hint="fix the settings above (payload, config file or ESDB_RELAY_* env vars)",
        field=first,
        problems=lines,
    )


def env_error(exc: SettingsError) -> ConfigError:
    """pydantic-settings names only the top-level field: name the env vars that are not JSON."""
    found = re.search(r'field "(\w+)"', str(exc))
    field = found.group(1) if found else None
    prefix = f"{ENV_PREFIX}{(field or '').upper()}"
    culprits = sorted(
        name for name, value in os.environ.items() if name.startswith(prefix) and not _json(value)
    )
    problems = [
        f"{_setting(name)}: env {name} is not valid JSON — lists and tables in env vars must be "
        "JSON, "
        f"e.g. {ENV_PREFIX}FILTERS__INCLUDE_STREAMS='[\"^order-\"]'"
        for name in culprits
    ]
    return ConfigError(
        "invalid job configuration:\n" + "\n".join(f"  {p}" for p in problems)
        if problems
        else f"invalid job configuration: {exc}",
        hint=f"lists and tables in {ENV_PREFIX}* env vars must be JSON, e.g. "
        f"{ENV_PREFIX}FILTERS__INCLUDE_STREAMS='[\"^order-\"]'",
        field=field,
        problems=problems,
    )


def _setting(env_name: str) -> str:
    return env_name.removeprefix(ENV_PREFIX).lower().replace("__", ".")


def _json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True

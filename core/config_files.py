"""Where a job configuration comes from besides env vars: a TOML/YAML/JSON file, or an
invocation payload."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from core.errors import ConfigError


def payload_mapping(payload: Any) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise ConfigError(
            f"the invocation payload must be an object of settings, not {type(payload).__name__}",
            hint='send e.g. {"job_id": "orders-migration", "budget": {"max_events": 5000}}',
        )
    return payload


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings in a .toml, .yaml/.yml or .json file; ConfigError naming the file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise ConfigError(
            f"config file {path}: unsupported file type {suffix or '(none)'!r}",
            hint="use a .toml, .yaml, .yml or .json file",
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist", hint="check the path") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.start})",
            hint="save it as UTF-8",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"config file {path} cannot be read: {exc.strerror or exc}",
            hint="check the path and its permissions",
        ) from None
    # Parser messages may quote the offending line, which may hold a password: report only
    # what is wrong and where.
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not valid TOML: {exc}", hint="fix the TOML syntax"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}",
            hint="fix the JSON syntax",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(
            f"config file {path} is not valid YAML: {problem}{where}",
            hint="fix the YAML syntax",
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a table of settings, not a {type(data).__name__}",
            hint="write key = value pairs (TOML) or key: value pairs (YAML) at the top level",
        )
    return data

"""Checkpoint store URLs: ``scheme://NAME?option=value&...``, read the same way by every store.

A store URL names where the store lives (a file, a table, a collection), never a job and never a
secret: values are not echoed in errors, and unknown options (``?key=...``) are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import parse_qsl

from core.errors import ConfigError

FIELD = "checkpoint_store"


def split_store_url(url: str, scheme: str, *, hint: str) -> tuple[str, list[tuple[str, str]]]:
    """``scheme://REST?QUERY`` → ``(REST, [(key, value), ...])``; ConfigError for another
    scheme."""
    found, sep, rest = url.partition("://")
    if not sep or found.lower() != scheme:
        article = "an" if scheme[0] in "aeiou" else "a"
        raise ConfigError(f"not {article} {scheme}:// URL", field=FIELD, hint=hint)
    rest, _, query = rest.partition("?")
    return rest, parse_qsl(query, keep_blank_values=True)


def one_name(rest: str, scheme: str, noun: str, *, hint: str) -> str:
    """The one name a cloud store URL gives (a trailing '/' allowed): no path after it, because
    the job id comes from the job configuration."""
    name = rest[:-1] if rest.endswith("/") else rest
    if not name:
        raise ConfigError(f"{scheme} URL names no {noun}", field=FIELD, hint=hint)
    if "/" in name:
        raise ConfigError(
            f"{scheme} URL has a path after the {noun} name",
            field=FIELD,
            hint=f"the URL names the {noun} only ({scheme}://{noun.upper()}); the job id comes "
            "from the job configuration (job_id)",
        )
    return name


def read_options(
    pairs: list[tuple[str, str]],
    scheme: str,
    allowed: Collection[str],
    *,
    unknown_hint: str,
    convert: Callable[[str, str], Any] = lambda key, value: value,
    empty_hint: str | None = None,
) -> dict[str, Any]:
    """The URL's options, each converted by ``convert(key, value)`` (which raises ConfigError
    for a bad value). With ``empty_hint``, an empty value is refused and values are stripped."""
    options: dict[str, Any] = {}
    for key, value in pairs:
        if key not in allowed:
            raise ConfigError(
                f"unknown {scheme} store option {key[:40]!r}", field=FIELD, hint=unknown_hint
            )
        if empty_hint is not None:
            value = value.strip()
            if not value:
                raise ConfigError(
                    f"{scheme} store option {key!r} is empty", field=FIELD, hint=empty_hint
                )
        options[key] = convert(key, value)
    return options


__all__ = ["FIELD", "one_name", "read_options", "split_store_url"]

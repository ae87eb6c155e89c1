"""Transform hooks used by the engine tests (loaded by `module:function` like a user's)."""

from __future__ import annotations

from dataclasses import replace

from core.eventstore import Event


def rename_and_drop(event: Event) -> Event | None:
    if event.type == "Secret":
        return None
    if event.type == "OldName":
        return replace(event, type="NewName")
    return event


def split_in_two(event: Event) -> list[Event]:
    return [event, replace(event, type=event.type + "Audit")]


def explode(event: Event) -> Event:
    raise ValueError("boom")


def drop_dropped(event: Event) -> Event | None:
    return None if event.type == "Drop" else event

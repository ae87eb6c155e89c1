"""Transform hooks used by the engine tests (loaded by `module:function` like a user's)."""

from __future__ import annotations

from dataclasses import replace

from core.model import Event


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


def reshape(event: Event) -> Event | list[Event] | None:
    """The property tests' transform (tests/engine/test_properties.py mirrors it for the
    oracle): drops Noise, renames Removed to Deleted, splits Updated in two."""
    if event.type == "Noise":
        return None
    if event.type == "Removed":
        return replace(event, type="Deleted")
    if event.type == "Updated":
        return [event, replace(event, type="UpdatedAudit")]
    return event

"""The CLI's way to a cloud checkpoint store: register the store a job's URL names.

The cloud stores live with their handlers; the CLI can use them too (with that cloud's extra
installed), e.g. to watch a deployed job's status from a laptop. Which module provides which
scheme is core/stores/registry.py's one table.
"""

from __future__ import annotations

import typer
from rich.console import Console

from core.stores.registry import register_provider

_err = Console(stderr=True)


def register_cloud_store(url: str) -> None:
    """Register the store ``url`` names; exit 2 when its cloud SDK is not installed."""
    try:
        register_provider(url)
    except ImportError as e:
        _err.print(
            f"[red]the {url.partition('://')[0]} checkpoint store needs its cloud SDK:[/] {e}"
        )
        raise typer.Exit(2) from None

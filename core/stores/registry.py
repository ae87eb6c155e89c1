"""Which store serves which URL scheme: one table, and ``open_store``.

Cloud stores live with their handler (handlers/<cloud>/checkpoint_store.py) so that core never
imports a cloud SDK; a handler registers its store when it is imported, and the CLI registers
the one a job's URL names (``register_provider``). The SQLite store ships with core and is
registered the first time a ``sqlite://`` URL is opened.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError
from core.stores.models import CheckpointStore, Clock, utcnow

StoreFactory = Callable[..., CheckpointStore]
"""``factory(url: str, *, now: Clock, **options) -> CheckpointStore``."""


@dataclass(frozen=True)
class Provider:
    """Where the store of one scheme lives; ``extra`` is the pip extra its SDK comes with
    (None: it ships with core)."""

    module: str
    name: str
    extra: str | None = None


PROVIDERS: dict[str, Provider] = {
    "sqlite": Provider("core.stores.sqlite", "SQLite"),
    "dynamodb": Provider("handlers.aws.checkpoint_store", "DynamoDB", "aws"),
    "firestore": Provider("handlers.gcp.checkpoint_store", "Firestore", "gcp"),
    "azuretable": Provider("handlers.azure.checkpoint_store", "Azure Table Storage", "azure"),
}

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_FACTORIES: dict[str, StoreFactory] = {}


def register_store(scheme: str, factory: StoreFactory) -> None:
    """Make ``open_store`` use ``factory`` for URLs of ``scheme`` (replaces an earlier one)."""
    scheme = scheme.lower()
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
        raise ValueError(f"invalid URL scheme {scheme!r}")
    _FACTORIES[scheme] = factory


def known_schemes() -> list[str]:
    """Every scheme a checkpoint store URL may use, registered or not."""
    return sorted(set(_FACTORIES) | set(PROVIDERS))


def store_scheme(url: str) -> str:
    """The URL's scheme, lower-cased, if it is a known one; ConfigError otherwise.

    The URL itself is never echoed: cloud store URLs may carry keys.
    """
    valid = ", ".join(f"{s}://" for s in known_schemes())
    match = _SCHEME_RE.match(url)
    if not match:
        raise ConfigError(
            "checkpoint store URL has no scheme",
            field="checkpoint_store",
            hint=f"use one of {valid} (e.g. sqlite:///esdb-relay.db)",
        )
    scheme = match.group(1).lower()
    if scheme not in known_schemes():
        raise ConfigError(
            f"unknown checkpoint store scheme {scheme!r}",
            field="checkpoint_store",
            hint=f"use one of {valid}",
        )
    return scheme


def register_provider(url: str) -> None:
    """Import the module that provides ``url``'s store and let it register. A cloud store
    needs its SDK: ConfigError when it is not installed. Nothing for a URL of no known
    scheme."""
    scheme = url.partition("://")[0].lower()
    provider = PROVIDERS.get(scheme)
    if provider is None:
        return
    try:
        module = importlib.import_module(provider.module)
    except ImportError as e:
        raise ConfigError(
            f"the {provider.name} checkpoint store ({scheme}://) needs its cloud SDK: {e}",
            field="checkpoint_store",
            hint=f"install esdb-relay with the cloud's extra: pip install "
            f"'esdb-relay[{provider.extra or scheme}]'",
        ) from None
    module.register()


def open_store(url: str, *, now: Clock = utcnow, **options: Any) -> CheckpointStore:
    """Open the checkpoint store named by ``url`` (``sqlite:///esdb-relay.db``, ...)."""
    scheme = store_scheme(url)
    factory = _FACTORIES.get(scheme)
    provider = PROVIDERS.get(scheme)
    if factory is None and provider is not None and provider.extra is None:
        register_provider(url)
        factory = _FACTORIES.get(scheme)
    if factory is None:
        assert provider is not None and provider.extra is not None
        extra = provider.extra
        raise ConfigError(
            f"the {provider.name} checkpoint store ({scheme}://) is not available here",
            field="checkpoint_store",
            hint=(
                f"it is provided by handlers/{extra}: install it with "
                f"`pip install 'esdb-relay[{extra}]'` and run under that handler (importing "
                f"handlers.{extra} registers it), or use sqlite:///esdb-relay.db locally"
            ),
        )
    return factory(url, now=now, **options)


__all__ = [
    "PROVIDERS",
    "Provider",
    "StoreFactory",
    "known_schemes",
    "open_store",
    "register_provider",
    "register_store",
    "store_scheme",
]

"""Fixtures for the emulator conformance suite.

Every test gets its own emulator on a free port, so tests never share state and positions in
`$all` are predictable (a fresh emulator holds only the seeded system records).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from esdbclient import EventStoreDBClient

from esdb_emulator import Emulator


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A fresh plaintext emulator (no TLS, no auth, like `--insecure`)."""
    with Emulator() as db:
        yield db


@pytest.fixture
def client(emulator: Emulator) -> Iterator[EventStoreDBClient]:
    """An esdbclient connected to the `emulator` fixture, closed after the test."""
    c = EventStoreDBClient(emulator.uri)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def tls_emulator() -> Iterator[Emulator]:
    """A fresh emulator with a generated self-signed certificate and admin/changeit auth."""
    with Emulator(tls=True) as db:
        yield db


@pytest.fixture
def tls_client(tls_emulator: Emulator) -> Iterator[EventStoreDBClient]:
    """An esdbclient connected over TLS (tlsCaFile=...) with the default credentials."""
    c = EventStoreDBClient(tls_emulator.uri)
    try:
        yield c
    finally:
        c.close()

"""Fixtures for engine tests: a pair of in-process emulators (source, target)."""

from __future__ import annotations

import pytest

from esdb_emulator import Emulator


@pytest.fixture
def pair():
    with Emulator() as source, Emulator() as target:
        yield source, target

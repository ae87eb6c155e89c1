"""When a slice must stop and its lease end: the arithmetic of core/invocation.py's clock, on
fake clocks (no real time is measured)."""

from __future__ import annotations

from typing import Any

import pytest

import core.invocation as invocation
from core.config import BudgetConfig
from core.invocation import COLD_START_SECONDS, InvocationClock, platform_clock


class Monotonic:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cold(monkeypatch):
    """A process that started at monotonic 1000 and served nothing yet."""
    monkeypatch.setattr(invocation, "PROCESS_STARTED", 1000.0)
    monkeypatch.setattr(invocation, "_served_before", False)


def test_a_cold_start_counts_from_the_process_start(cold):
    clock = Monotonic(1012.0)  # imports and start-up took 12 s before the first request
    left = platform_clock(540, now=clock).seconds_left(startup_margin=10)
    assert left == 540 - 12 - 10
    assert BudgetConfig().effective_deadline(left) == 540 - 12 - 10 - 10


def test_later_invocations_count_from_the_handlers_start(cold):
    platform_clock(540, now=Monotonic(1012.0))
    clock = Monotonic(5000.0)
    second = platform_clock(540, now=clock)
    clock.now += 100  # the slice has run 100 s
    assert second.seconds_left(startup_margin=10) == 540 - 100 - 10


def test_a_long_idle_process_counts_at_most_the_cold_start_window(cold):
    """A pre-warmed instance (Azure EP) or a process started long before its first invocation."""
    clock = Monotonic(1000.0 + 3600)
    left = platform_clock(600, now=clock).seconds_left(startup_margin=0)
    assert left == 600 - COLD_START_SECONDS


def test_lambda_counts_its_own_remaining_time_whenever_asked():
    remaining = iter([899.5, 300.0])
    clock = InvocationClock(remaining=lambda: next(remaining))
    assert clock.seconds_left(startup_margin=10) == 899.5  # Lambda's figure includes start-up
    assert clock.seconds_left() == 300.0


def test_no_timeout_means_no_limit():
    assert InvocationClock().seconds_left(10) is None
    assert BudgetConfig().effective_deadline(None) == BudgetConfig().deadline_seconds


@pytest.mark.parametrize("module", ["handlers.gcp.main", "handlers.azure.function_app"])
def test_the_timeout_only_platforms_give_the_handler_the_platform_clock(
    module: str, monkeypatch, cold
):
    import importlib

    handler = importlib.import_module(module)
    seen: dict[str, Any] = {}
    monkeypatch.setattr(handler, "handle", lambda payload, **kw: seen.update(kw) or {})
    monkeypatch.setenv("ESDB_RELAY_FUNCTION_TIMEOUT", "300")
    monkeypatch.setattr(invocation.time, "monotonic", lambda: 1030.0)
    handler.run({})
    clock = seen["clock"]
    assert clock.timeout == 300 and clock.started == 1000.0  # the process start: cold
    assert "remaining_seconds" not in seen

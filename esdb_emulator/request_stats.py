"""A persistent subscription client's latency statistics, kept when extra statistics are on.

KurrentDB src/KurrentDB.Core/Services/PersistentSubscription/RequestStatistics.cs: an operation
starts when an event is pushed to the client and ends when its id is acked or nacked; the last
1,000 durations (whole milliseconds) give the measurements PersistentSubscriptionStats reports
per connection (ConnectionInfo.ObservedMeasurements).
"""

from __future__ import annotations

import time
from collections import deque
from decimal import Decimal

WINDOW = 1000
_PERCENTILES = (
    ("90%", Decimal(90)),
    ("95%", Decimal(95)),
    ("99%", Decimal(99)),
    ("99.5%", Decimal("99.5")),
    ("99.9%", Decimal("99.9")),
)


class RequestStatistics:
    def __init__(self, window: int = WINDOW) -> None:
        self._started: dict[str, int] = {}
        self._measurements: deque[int] = deque(maxlen=window)

    def start(self, event_id: str) -> None:
        self._started[event_id] = time.monotonic_ns()

    def end(self, event_id: str) -> None:
        started = self._started.pop(event_id, None)
        if started is not None:
            self._measurements.append((time.monotonic_ns() - started) // 1_000_000)

    def measurements(self) -> list[tuple[str, int]]:
        """GetMeasurementDetails: Mean, Median, Fastest, Quintile 1-5, 90% ... 99.9%, Highest."""
        items = sorted(self._measurements)
        if not items:
            return []
        size = len(items)
        out = [("Mean", sum(items) // size), ("Median", items[size // 2]), ("Fastest", items[0])]
        out += [(f"Quintile {i + 1}", items[_percentile(Decimal(i * 20), size)]) for i in range(5)]
        out += [(key, items[_percentile(p, size)]) for key, p in _PERCENTILES]
        out.append(("Highest", items[-1]))
        return out


def _percentile(percentile: Decimal, size: int) -> int:
    index = int(percentile / 100 * size)
    return index - 1 if index == size else index

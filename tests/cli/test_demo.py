"""`esdb-relay demo`, small: its summary has no empty header row, every count says what it
counts (records written = events + stream metadata, deletes, what is not copied, which
streams were verified), and its relay bars label their figures as bytes of `$all`."""

from __future__ import annotations

import re

from rich.console import Console

from handlers.cli.demo import run_demo


def test_the_summary_explains_its_counts():
    console = Console(record=True, width=200, force_terminal=False, color_system=None)
    assert run_demo(console, events=1_500, streams=100) == 0
    text = console.export_text()
    summary = text[text.index("migration") :]
    assert not [line for line in summary.splitlines() if re.fullmatch(r"[┃│ ]+", line)], summary
    written = re.search(
        r"records written\s+│\s+([\d,]+)\s+│ ([\d,]+) events \+ ([\d,]+) stream", text
    )
    assert written, summary
    total, events, metadata = (int(g.replace(",", "")) for g in written.groups())
    assert events == 1_500 and total == events + metadata
    counted = re.search(r"the relay's checkpoints count ([\d,]+) of them", summary)
    if counted:  # the kill landed between a write and its commit
        assert int(counted.group(1).replace(",", "")) < total
        assert "not counted twice" in summary
    assert "soft deletes" in summary and "tombstones, copied as deletes" in summary
    assert "$ce links and system records" in summary
    assert re.search(r"every stream of the source: .* of its 100 stream names", summary)
    assert "bytes of the source's $all" in text
    assert "target equals the source" in text

"""The dashboard page in a real browser: Debian's Chromium, headless (`make browser-deps`).

Chromium loads the page, runs its script (``--virtual-time-budget`` lets the fetches and the
drawing finish), then dumps the DOM and takes a screenshot in one run. The tests read the DOM
the script built (figures, chart elements, the failures table) and the screenshot's pixels
(the charts' colours are there: the page is not blank). Playwright's browser download does not
work here, so Chromium is driven by its command line.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import uuid
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.checkpoint import SliceRecord, open_store
from core.rules import dead_letter_stream
from esdb_emulator import Emulator
from esdb_emulator.store import NO_STREAM, ProposedEvent
from handlers.cli.dashboard import DashboardServer, Feeds
from handlers.cli.main import app
from tests.cli.test_dashboard import JOB, SCRIPT_ERROR, progress, seed_history

REPO = Path(__file__).resolve().parents[2]
POSITION_BLUE = bytes.fromhex("1f77b4")  # dashboard.js COLOURS: used by nothing else
RATE_GREEN = bytes.fromhex("2ca02c")
LAG_ORANGE = bytes.fromhex("ff7f0e")
FAILURE_RED = bytes.fromhex("d62728")


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is not installed: run `make browser-deps` (Debian's package)")
    return found


def render(url: str, tmp_path: Path) -> tuple[Page, Counter[bytes]]:
    """The DOM after the page's script ran, and the screenshot's colours (pixel counts)."""
    shot = tmp_path / "page.png"
    done = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-background-networking",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,1000",
            "--hide-scrollbars",
            "--virtual-time-budget=4000",
            f"--screenshot={shot}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0 and shot.exists(), done.stderr[-3000:]
    return Page(done.stdout), png_colours(shot.read_bytes())


class Page(HTMLParser):
    """The text of each element with an id, and the class names of every element."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.html = html
        self.text: dict[str, str] = {}
        self.attrs_by_id: dict[str, dict[str, str | None]] = {}
        self.classes: Counter[str] = Counter()
        self.tags: Counter[str] = Counter()
        self._open: list[str | None] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags[tag] += 1
        for name in (found.get("class") or "").split():
            self.classes[f"{tag}.{name}"] += 1
        element_id = found.get("id")
        if element_id:
            self.attrs_by_id[element_id] = found
            self.text.setdefault(element_id, "")
        if tag not in ("meta", "link", "br", "img", "input"):
            self._open.append(element_id)

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element_id in self._open:
            if element_id:
                self.text[element_id] += data


def png_colours(data: bytes) -> Counter[bytes]:
    """How many pixels of each RGB colour an 8-bit RGB/RGBA PNG has (a small PNG decoder:
    Pillow is not a dependency of the project)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG"
    pos, idat = 8, []
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), f"PNG depth {depth}, colour type {colour}"
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat.append(body)
    raw, stride, n = zlib.decompress(b"".join(idat)), width * channels, channels
    prev, counts = bytearray(stride), Counter[bytes]()
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(n, stride):
                line[i] = (line[i] + line[i - n]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                line[i] = (line[i] + ((line[i - n] if i >= n else 0) + prev[i]) // 2) & 255
        elif kind == 4:
            for i in range(stride):
                a, b, c = (line[i - n] if i >= n else 0), prev[i], (prev[i - n] if i >= n else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        counts.update(bytes(line[i : i + 3]) for i in range(0, stride, n))
        prev = line
    return counts


def assert_safe(page: Page) -> None:
    """The `<script>` error is shown as text: no script of it ran, no element of it exists."""
    assert "pwned" not in (re.search(r"<title>(.*?)</title>", page.html) or [""])[0]
    assert page.tags["img"] == 0
    assert "&lt;script&gt;document.title=" in page.html


def test_the_page_renders_its_figures_charts_and_failures(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/cp.db") as store:
        seed_history(store)
        figures = progress(dead_lettered=4)
        feeds = Feeds(progress=lambda: figures, history=lambda: store.history(JOB, limit=200))
        server = DashboardServer(feeds, "127.0.0.1", 0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            page, colours = render(server.url, tmp_path)
        finally:
            server.shutdown()
            server.server_close()

    assert int(page.attrs_by_id["page"].get("data-loaded") or 0) >= 1, page.html[-2000:]
    assert page.text["error"] == ""
    assert page.text["job"] == JOB
    assert page.text["state"] == "copying"
    assert page.attrs_by_id["state"]["data-state"] == "copying"
    assert page.text["percent"] == "66.7 % of $all's bytes copied"
    assert page.attrs_by_id["bar-fill"]["style"] == "width: 66.6667%;"
    assert page.text["lag-events"] == "500"
    assert page.text["lag-bytes"] == "10,000"
    assert page.text["copy-rate"] == "80 events/s"
    assert page.text["eta"] == "7 s"
    assert page.text["events-written"] == "1,990"
    assert (
        page.text["dead-lettered"] == f"4 (listed in the target's {dead_letter_stream(JOB)} stream)"
    )
    assert page.text["lease"].startswith("held by relay-1 until ")
    assert page.text["last-error"] == f"last error: {SCRIPT_ERROR}"
    # the charts: 5 slices with positions, lags and rates, one failure marked on each chart
    assert page.classes["polyline.series"] == 3
    assert page.classes["circle.point"] == 15
    assert page.classes["line.failure"] == 3
    assert page.classes["line.head"] == 1
    assert page.text["failures"].count(SCRIPT_ERROR) == 1
    assert_safe(page)
    # the screenshot: the charts were painted, in their colours
    assert colours[POSITION_BLUE] > 300 and colours[RATE_GREEN] > 300, colours.most_common(8)
    assert colours[LAG_ORANGE] > 300, colours.most_common(8)
    assert colours[FAILURE_RED] > 100
    assert len(colours) > 50  # not a blank page


def seed_source(db: Emulator, streams: int = 4, events: int = 25) -> None:
    for s in range(streams):
        db.store.append(
            f"order-{s}",
            NO_STREAM,
            [
                ProposedEvent(str(uuid.uuid4()), "Placed", "application/json", b'{"n": 1}')
                for _ in range(events)
            ],
        )


def test_the_command_serves_a_migrated_job_to_the_browser(tmp_path):
    """End to end: a job copied by `run`, a failed slice in its history, `esdb-relay dashboard`
    in its own process with the job's real store and source, read by Chromium."""
    with Emulator() as source, Emulator() as target:
        seed_source(source)
        env = {
            "ESDB_RELAY_JOB_ID": JOB,
            "ESDB_RELAY_SOURCE": source.uri,
            "ESDB_RELAY_TARGET": target.uri,
            "ESDB_RELAY_CHECKPOINT_STORE": f"sqlite:///{tmp_path}/cp.db",
            "ESDB_RELAY_BUDGET__MAX_EVENTS": "25",  # several slices for the charts
        }
        copied = CliRunner().invoke(app, ["run", "--until-caught-up", "--no-progress"], env=env)
        assert copied.exit_code == 0, copied.output
        with open_store(env["ESDB_RELAY_CHECKPOINT_STORE"]) as store:
            now = datetime.now(UTC)
            store.record_slice(
                JOB,
                SliceRecord(
                    job_id=JOB,
                    started_at=now - timedelta(seconds=1),
                    finished_at=now,
                    owner="relay-2",
                    error=SCRIPT_ERROR,
                ),
            )
            history = store.history(JOB, limit=200)
        server = subprocess.Popen(
            [sys.executable, "-m", "handlers.cli.main", "dashboard", "--port", "0"],
            env={**os.environ, **env, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            assert server.stdout is not None
            first = server.stdout.readline()
            found = re.search(r"http://127\.0\.0\.1:\d+/", first)
            assert found, f"{first!r} {server.stderr.read() if server.poll() is not None else ''}"
            page, colours = render(found.group(0), tmp_path)
        finally:
            server.send_signal(signal.SIGTERM)
            out, errors = server.communicate(timeout=30)
    assert server.returncode == 0, errors
    assert "dashboard stopped" in out
    assert source.uri not in page.html and "changeit" not in page.html

    assert int(page.attrs_by_id["page"].get("data-loaded") or 0) >= 1, page.html[-2000:]
    assert page.text["error"] == ""
    assert page.text["job"] == JOB
    assert page.text["lag-bytes"] == "0"
    assert page.text["events-written"] == "100"
    assert page.text["percent"] == "100.0 % of $all's bytes copied"
    assert page.text["lease"] == "free (no relay holds it)"
    # one point per slice that committed a position, one per slice that took time (its rate)
    ok = [h for h in history if not h.error]
    assert len(ok) >= 4
    positions = [h for h in ok if h.to_position]
    rates = [h for h in ok if h.finished_at > h.started_at]
    lags = [h for h in ok if h.lag_bytes is not None]
    assert len(lags) == len(positions), "every slice that committed measured its lag"
    assert page.classes["circle.point"] == len(positions) + len(lags) + len(rates)
    assert page.classes["polyline.series"] == 3
    assert page.classes["line.failure"] == 3
    assert SCRIPT_ERROR in page.text["failures"]
    assert_safe(page)
    assert colours[POSITION_BLUE] > 0 and colours[RATE_GREEN] > 0, colours.most_common(8)


def test_a_sharded_job_shows_a_row_per_shard_and_a_line_per_shard(tmp_path):
    """A 3-shard job whose shards 0 and 2 ran (`esdb-relay run --shard I`) and shard 1 never
    did, served by `esdb-relay dashboard` in its own process, read by Chromium."""
    with Emulator() as source, Emulator() as target:
        seed_source(source, streams=30, events=3)
        env = {
            "ESDB_RELAY_JOB_ID": JOB,
            "ESDB_RELAY_SOURCE": source.uri,
            "ESDB_RELAY_TARGET": target.uri,
            "ESDB_RELAY_CHECKPOINT_STORE": f"sqlite:///{tmp_path}/cp.db",
            "ESDB_RELAY_BUDGET__MAX_EVENTS": "10",  # several slices per shard for the charts
            "ESDB_RELAY_SHARDS": "3",
        }
        for shard in ("0", "2"):
            ran = CliRunner().invoke(
                app, ["run", "--shard", shard, "--until-caught-up", "--no-progress"], env=env
            )
            assert ran.exit_code == 0, ran.output
        server = subprocess.Popen(
            [sys.executable, "-m", "handlers.cli.main", "dashboard", "--port", "0"],
            env={**os.environ, **env, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            assert server.stdout is not None
            first = server.stdout.readline()
            found = re.search(r"http://127\.0\.0\.1:\d+/", first)
            assert found, f"{first!r} {server.stderr.read() if server.poll() is not None else ''}"
            page, _ = render(found.group(0), tmp_path)
        finally:
            server.send_signal(signal.SIGTERM)
            server.communicate(timeout=30)

    assert int(page.attrs_by_id["page"].get("data-loaded") or 0) >= 1, page.html[-2000:]
    assert page.text["error"] == ""
    assert "hidden" not in page.attrs_by_id["shards-section"]
    rows = re.findall(r'<tr data-shard="(\d)">(.*?)</tr>', page.html)
    cells = {i: re.findall(r"<td[^>]*>(.*?)</td>", row) for i, row in rows}
    assert sorted(cells) == ["0", "1", "2"]
    assert cells["1"][1] == "not-started" and cells["1"][7] == "never"
    assert cells["0"][1] == cells["2"][1] == "idle" and cells["0"][5] == "caught up"
    assert int(cells["1"][3]) > 0  # shard 1's events wait
    assert page.text["state"] == "behind-and-not-running"
    assert "Global order is not kept across shards" in page.text["shards-section"]
    # the position chart: one line per shard that ran, not one line zigzagging between them
    position_chart = re.search(r'<svg id="chart-position".*?</svg>', page.html, re.S)
    assert position_chart and position_chart.group(0).count("<polyline") == 2
    assert f"({JOB}.shard-" not in page.text["failures"]  # no failure

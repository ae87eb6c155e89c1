"""`esdb-relay dashboard`'s server: its endpoints, headers and refusals, over real HTTP.

The history comes from a real SQLite checkpoint store; the progress is a ``Progress`` value
(how `measure` computes one is core/progress.py's tests'; the page in a real browser, fed by
the real command, is tests/cli/test_dashboard_browser.py).
"""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.checkpoint import Position, SliceRecord, open_store
from core.progress import Progress
from esdb_emulator import Emulator
from handlers.cli.dashboard import STATIC, DashboardServer, Feeds
from handlers.cli.main import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
SCRIPT_ERROR = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>"
JOB = "dash-job"


def progress(**changes: object) -> Progress:
    now = datetime.now(UTC)
    figures: dict[str, object] = {
        "job_id": JOB,
        "state": "copying",
        "caught_up": False,
        "checked_at": now,
        "head_position": 30_000,
        "position": 20_000,
        "lag_bytes": 10_000,
        "lag_events": 500,
        "lag_events_exact": True,
        "lag_events_counted": 500,
        "lag_seconds": 12.0,
        "copy_rate": 80.0,
        "source_write_rate": 3.0,
        "eta_seconds": 7.0,
        "relay_running": True,
        "allowed_gap_seconds": 60.0,
        "relay_stopped_at": None,
        "lease": {"owner": "relay-1", "expires_at": now + timedelta(seconds=30)},
        "last_slice_at": now,
        "last_success_at": now,
        "last_success_age_seconds": 3.0,
        "last_slice_seconds": 2.0,
        "consecutive_failures": 1,
        "stalled": False,
        "last_error": SCRIPT_ERROR,
        "events_read": 2_000,
        "events_written": 1_990,
        "events_skipped": 10,
        "events_filtered": 0,
        "dead_lettered": 0,
        "warnings": [],
    }
    return Progress.model_validate({**figures, **changes})


def seed_history(store, slices: int = 6) -> None:
    start = datetime.now(UTC) - timedelta(minutes=5)
    for i in range(slices):
        began = start + timedelta(seconds=10 * i)
        store.record_slice(
            JOB,
            SliceRecord(
                job_id=JOB,
                started_at=began,
                finished_at=began + timedelta(seconds=2),
                owner="relay-1",
                events_read=0 if i == 3 else 100 + i,
                events_written=0 if i == 3 else 100 + i,
                from_position=Position(commit=1000 * i, prepare=1000 * i) if i else None,
                to_position=None if i == 3 else Position(commit=1000 * (i + 1), prepare=0),
                lag_bytes=None if i == 3 else 6000 - 1000 * (i + 1),
                error=SCRIPT_ERROR if i == 3 else None,
            ),
        )


@contextmanager
def serving(feeds: Feeds, host: str = "127.0.0.1") -> Iterator[DashboardServer]:
    server = DashboardServer(feeds, host, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def get(server: DashboardServer, path: str, *, host: str | None = None, method: str = "GET"):
    address, port = server.server_address[:2]
    connection = http.client.HTTPConnection(str(address), port, timeout=10)
    try:
        headers = {"Host": host} if host else {}
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture
def store(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/cp.db") as opened:
        yield opened


def test_endpoints_answer_progress_and_the_stores_history(store):
    seed_history(store)
    figures = progress()
    feeds = Feeds(progress=lambda: figures, history=lambda: store.history(JOB, limit=200))
    with serving(feeds) as server:
        status, headers, body = get(server, "/api/progress")
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert Progress.model_validate_json(body) == figures

        status, _, body = get(server, "/api/history")
        history = [SliceRecord.model_validate(r) for r in json.loads(body)]
        assert status == 200 and history == store.history(JOB, limit=200)
        assert len(history) == 6 and history[0].finished_at > history[-1].finished_at
        assert history[2].error == SCRIPT_ERROR  # JSON carries the text as it is ...


def test_the_page_holds_no_data_and_its_headers_allow_only_its_own_script(store):
    feeds = Feeds(progress=progress, history=lambda: [], refresh_seconds=7)
    with serving(feeds) as server:
        status, headers, page = get(server, "/")
        assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
        text = page.decode()
        # ... and the page is never rendered with it: the script writes it with textContent
        assert JOB not in text and "{{" not in text
        assert 'data-refresh-seconds="7"' in text
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cache-Control"] == "no-store"
        for asset, kind in (("/dashboard.js", "text/javascript"), ("/dashboard.css", "text/css")):
            status, headers, body = get(server, asset)
            assert status == 200 and headers["Content-Type"].startswith(kind) and body
        status, headers, body = get(server, "/", method="HEAD")
        assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(page)
        assert get(server, "/etc/passwd")[0] == 404
        assert get(server, "/../pyproject.toml")[0] == 404


def test_the_script_never_writes_html():
    script = (STATIC / "dashboard.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink


def test_a_request_for_another_host_name_is_refused_on_loopback(store):
    """DNS rebinding: a web page of evil.example resolved to 127.0.0.1 must not read the job."""
    with serving(Feeds(progress=progress, history=lambda: [])) as server:
        port = server.server_address[1]
        assert get(server, "/api/progress", host=f"evil.example:{port}")[0] == 421
        for name in ("localhost", "127.0.0.1"):
            assert get(server, "/api/progress", host=f"{name}:{port}")[0] == 200


def test_a_store_that_cannot_be_read_is_said_on_the_page_not_a_crash(tmp_path):
    url = f"sqlite:///{tmp_path}/cp.db"
    with open_store(url) as store:
        seed_history(store, slices=1)
    with sqlite3.connect(tmp_path / "cp.db") as db:  # a record this version cannot read
        db.execute("UPDATE relay_history SET record = '{\"job_id\": 1}'")
    with (
        open_store(url) as store,
        serving(
            Feeds(progress=progress, history=lambda: store.history(JOB), cache_seconds=0)
        ) as server,
    ):
        status, _, body = get(server, "/api/history")
        assert status == 503
        error = json.loads(body)["error"]
        assert JOB in error and "not a valid record" in error
        assert get(server, "/api/progress")[0] == 200  # the rest still answers


def test_answers_within_the_cache_time_share_one_measurement():
    calls: list[int] = []

    def measured() -> Progress:
        calls.append(1)
        return progress()

    with serving(Feeds(progress=measured, history=lambda: [], cache_seconds=3600)) as server:
        for _ in range(3):
            assert get(server, "/api/progress")[0] == 200
    assert len(calls) == 1


def test_an_unexpected_error_is_a_500_that_shows_only_its_kind(caplog):
    def broken() -> Progress:
        raise RuntimeError("text of unknown origin: esdb://admin:changeit@host")

    with serving(Feeds(progress=broken, history=lambda: [])) as server:
        status, _, body = get(server, "/api/progress")
        assert get(server, "/api/history")[0] == 200  # the server lives on
    assert status == 500
    assert json.loads(body) == {"error": "unexpected RuntimeError: see the dashboard's terminal"}
    assert "RuntimeError: text of unknown origin: esdb://admin:***@host" in caplog.text


def test_on_a_network_address_any_host_name_is_answered():
    """--host 0.0.0.0 is the user's choice to be reached by other names (with a warning)."""
    with serving(Feeds(progress=progress, history=lambda: []), host="0.0.0.0") as server:
        assert not server.loopback
        port = server.server_address[1]
        assert get(server, "/api/progress", host=f"relay-box.internal:{port}")[0] == 200


def test_a_port_in_use_says_so_and_how_to_choose_another(tmp_path):
    with Emulator() as source, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "ESDB_RELAY_JOB_ID": JOB,
            "ESDB_RELAY_SOURCE": source.uri,
            "ESDB_RELAY_TARGET": source.uri,
            "ESDB_RELAY_CHECKPOINT_STORE": f"sqlite:///{tmp_path}/cp.db",
        }
        result = runner.invoke(app, ["dashboard", "--port", str(port)], env=env)
    assert result.exit_code == 2, result.output
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use." in result.output
    assert "--port (0 picks a free one)" in result.output


def test_the_page_is_in_the_sdist_and_the_wheel(tmp_path):
    """setuptools packs non-Python files only when pyproject names them (package-data): build
    the sdist, and run build_py, the step that lays out what a wheel holds."""
    names = sorted(p.name for p in STATIC.iterdir())
    assert names == ["dashboard.css", "dashboard.js", "index.html"]
    setup = [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q"]
    setup += ["egg_info", "--egg-base", str(tmp_path)]  # nothing written into the repo
    for step in (["sdist", "--dist-dir", str(tmp_path)], ["build_py", "-d", str(tmp_path / "lib")]):
        done = subprocess.run(
            setup + step, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, done.stderr[-2000:]
    (sdist,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        packed = {Path(n).name for n in archive.getnames() if "/dashboard_static/" in n}
    assert packed == set(names)
    built = tmp_path / "lib" / "handlers" / "cli" / "dashboard_static"
    assert sorted(p.name for p in built.iterdir()) == names


def test_the_command_refuses_a_bad_job_file(tmp_path):
    result = runner.invoke(app, ["dashboard", "-c", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2
    assert "configuration error" in result.output

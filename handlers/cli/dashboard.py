"""`esdb-relay dashboard`: a local status page for one job, from any checkpoint store.

The page (dashboard_static/: one HTML file, its script and its style sheet, no CDN) polls two
JSON endpoints served here with the standard library's ``ThreadingHTTPServer``:

- ``/api/progress``: the job's ``core.progress.Progress``, measured when asked (the one truth
  `status` and the metrics read too; no connection string is in it);
- ``/api/history``: the store's slice history, newest first, for the charts and the failures
  (a sharded job's: its shards' records merged, each naming its shard's key).

The script writes every value with ``textContent`` (never as HTML), the Content-Security-Policy
allows only this server's own script and style, and the server answers only requests addressed
to it by a loopback name while it listens on a loopback address (no DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from traceback import format_exc
from urllib.parse import urlsplit

import typer
from pydantic import BaseModel, TypeAdapter

from core.checkpoint import HISTORY_LIMIT, SliceRecord
from core.errors import RelayError
from core.logs import configure as configure_logging
from core.logs import logger, scrub
from core.progress import Progress, history_of, measure
from handlers.cli.common import (
    ConfigOption,
    ConnectTimeout,
    console,
    err,
    fail,
    load_job,
    stop_on_signals,
)
from handlers.cli.status_cmd import status_source

STATIC = resources.files("handlers.cli") / "dashboard_static"
PAGES = {  # path → (file, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
_HISTORY = TypeAdapter(list[SliceRecord])


class Unavailable(BaseModel):
    """What ``/api/progress`` answers (503) when the figures cannot be read right now."""

    error: str


@dataclass
class Feeds:
    """Where the page's figures come from: each call reads the live facts."""

    progress: Callable[[], Progress]
    history: Callable[[], list[SliceRecord]]
    refresh_seconds: float = 5.0
    cache_seconds: float = 1.0
    """Answers within this long of each other share one measurement (several tabs, reloads)."""


Answer = tuple[HTTPStatus, bytes]


class _Cached:
    """The latest answer of ``read`` for ``seconds``; one reader at a time under ``lock``
    (shared by the endpoints: a store's or the source's client is not used by two at once)."""

    def __init__(
        self,
        read: Callable[[], BaseModel | list[SliceRecord]],
        seconds: float,
        lock: threading.Lock,
    ) -> None:
        self._read, self._seconds, self._lock = read, seconds, lock
        self._value: tuple[float, Answer] | None = None

    def get(self) -> Answer:
        with self._lock:
            now = time.monotonic()
            if self._value is None or now - self._value[0] >= self._seconds:
                self._value = (now, self._answer())
            return self._value[1]

    def _answer(self) -> Answer:
        try:
            value = self._read()
        except RelayError as e:  # the store or the source cannot be read: say so, keep serving
            error = Unavailable(error=str(e)).model_dump_json().encode()
            return HTTPStatus.SERVICE_UNAVAILABLE, error
        except Exception as e:  # a bug: its text may hold anything, so only its kind is shown
            logger.error("dashboard: reading the job's figures failed: %s", scrub(format_exc()))
            unexpected = f"unexpected {type(e).__name__}: see the dashboard's terminal"
            return HTTPStatus.INTERNAL_SERVER_ERROR, Unavailable(
                error=unexpected
            ).model_dump_json().encode()
        if isinstance(value, list):
            return HTTPStatus.OK, _HISTORY.dump_json(value)
        return HTTPStatus.OK, value.model_dump_json().encode()


class DashboardServer(ThreadingHTTPServer):
    """The page and its two endpoints for one job. ``serve_forever`` until ``shutdown``."""

    daemon_threads = True

    def __init__(self, feeds: Feeds, host: str = "127.0.0.1", port: int = 0) -> None:
        self.feeds = feeds
        self.loopback = _is_loopback(host)
        lock = threading.Lock()
        self.api = {
            "/api/progress": _Cached(feeds.progress, feeds.cache_seconds, lock),
            "/api/history": _Cached(feeds.history, feeds.cache_seconds, lock),
        }
        self.address_family = _family(host)
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else str(host)
        return f"http://{shown}:{port}/"

    def page(self, name: str) -> bytes:
        text = (STATIC / name).read_text(encoding="utf-8")
        if name == "index.html":  # the only value put into the page: a number
            text = text.replace("{{refresh_seconds}}", f"{self.feeds.refresh_seconds:g}")
        return text.encode()


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "esdb-relay-dashboard"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        if self.server.loopback and not _loopback_host(self.headers.get("Host", "")):
            return self._send(HTTPStatus.MISDIRECTED_REQUEST, b"not this server\n", "text/plain")
        path = urlsplit(self.path).path
        if path in PAGES:
            name, kind = PAGES[path]
            return self._send(HTTPStatus.OK, self.server.page(name), kind, body=body)
        if path in self.server.api:
            status, data = self.server.api[path].get()
            return self._send(status, data, "application/json", body=body)
        self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", body=body)

    def _send(self, status: HTTPStatus, data: bytes, kind: str, *, body: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the page polls every few seconds; errors reach the page instead."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _family(host: str) -> int:
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return socket.AF_INET


def _loopback_host(header: str) -> bool:
    """True if a Host header names this machine by a loopback name (any port)."""
    name = header.rsplit(":", 1)[0] if not header.endswith("]") else header
    return name.lower() in LOOPBACK_NAMES or _is_loopback(name.strip("[]"))


def dashboard(
    config: Path | None = ConfigOption,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (loopback: this machine only)."
    ),
    port: int = typer.Option(
        8765, "--port", min=0, max=65535, help="Port to listen on (0: any free port)."
    ),
    refresh: float = typer.Option(
        5.0, "--refresh", min=1.0, max=3600.0, help="Seconds between the page's updates."
    ),
    connect_timeout: float = ConnectTimeout,
) -> None:
    """Serve a local web page of the job's progress: state, lag and rate over time, failures,
    lease holder. Reads the checkpoint store and the source; writes nothing."""
    configure_logging("text")
    job = load_job(config)
    with status_source(job, connect_timeout) as (source, store):  # as `status` reads them
        feeds = Feeds(
            progress=lambda: measure(job, source, store),
            history=lambda: history_of(store, job.job_id, limit=HISTORY_LIMIT),
            refresh_seconds=refresh,
        )
        _serve(feeds, host, port, job.job_id)


def _serve(feeds: Feeds, host: str, port: int, job_id: str) -> None:
    try:
        server = DashboardServer(feeds, host, port)
    except OSError as e:
        raise fail(
            f"cannot listen on {host}:{port}: {e.strerror or e}.",
            "Choose another port with --port (0 picks a free one) or another --host.",
        ) from None
    if not server.loopback:
        err.print(
            f"[yellow]warning:[/] listening on {host}: anyone who can reach it sees this job's "
            "progress (no connection string is shown). Use --host 127.0.0.1 to keep it local."
        )
    stop = stop_on_signals()
    thread = threading.Thread(target=server.serve_forever, name="dashboard", daemon=True)
    thread.start()
    console.print(f"dashboard of job {job_id}: {server.url} (Ctrl-C to stop)", soft_wrap=True)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
    console.print("dashboard stopped")

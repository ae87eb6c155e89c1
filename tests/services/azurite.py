"""Real Azurite (Azure Storage emulator) on 127.0.0.1, for the Azure store and handler tests.

Azurite 3.35.0 comes from the repo's package.json (``npm install``, done by ``make``); 3.36+
needs Node 22. Two session-scoped fixtures, each its own process on a free port:

- ``azurite_table`` yields a Table service connection string,
- ``azurite_queue`` yields a Queue service connection string.

A test module makes them available with ``azurite_table = tests.services.azurite.azurite_table``
(or ``from tests.services.azurite import azurite_table``). Outside pytest, ``azurite("table")``
is a context manager yielding the same connection string.

The account is Azurite's built-in development account; its key is public and documented, not a
credential.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import pytest

ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
"""Azurite's well-known development key (public; Azurite accepts nothing else by default)."""

START_TIMEOUT = 30.0
REPO = Path(__file__).resolve().parents[2]

Service = Literal["table", "queue"]
_ENDPOINT_KEY = {"table": "TableEndpoint", "queue": "QueueEndpoint"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port() -> int:
    """A port nothing listens on (bound and released: connections are refused at once)."""
    return free_port()


def connection_string(service: Service, port: int, *, host: str = "127.0.0.1") -> str:
    """A connection string for Azurite's ``service`` listening on ``host:port``."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"{_ENDPOINT_KEY[service]}=http://{host}:{port}/{ACCOUNT};"
    )


def azurite_binary(service: Service) -> str:
    """``node_modules/.bin/azurite-<service>`` of this repo (or one on PATH)."""
    name = f"azurite-{service}"
    local = REPO / "node_modules" / ".bin" / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(
        f"{name} is not installed: run `make services-deps` (npm install of azurite 3.35.0 into "
        "node_modules)",
        pytrace=False,
    )


@contextmanager
def azurite(service: Service, port: int | None = None) -> Iterator[str]:
    """Run one Azurite service in its own process group until the block ends; yields its
    connection string."""
    binary = azurite_binary(service)
    with tempfile.TemporaryDirectory(prefix=f"azurite-{service}-") as workspace:
        log = Path(workspace) / "azurite.log"
        for attempt in range(3):  # a free port can be taken between probing and binding
            chosen = port or free_port()
            with log.open("wb") as stderr:  # a file, not a pipe: a full pipe would block it
                proc = subprocess.Popen(
                    [
                        binary,
                        f"--{service}Host",
                        "127.0.0.1",
                        f"--{service}Port",
                        str(chosen),
                        "--inMemoryPersistence",
                        "--skipApiVersionCheck",
                        "--disableTelemetry",
                        "--silent",
                    ],
                    cwd=workspace,  # --location cannot be combined with in-memory persistence
                    stdin=subprocess.DEVNULL,
                    stdout=stderr,
                    stderr=stderr,
                    start_new_session=True,
                )
            try:
                if _wait_ready(proc, chosen, log, last_attempt=attempt == 2 or port is not None):
                    break
            except BaseException:
                _stop(proc)
                raise
        try:
            yield connection_string(service, chosen)
        finally:
            _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path, *, last_attempt: bool) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stderr = log.read_text(errors="replace")
            if "EADDRINUSE" in stderr and not last_attempt:
                return False
            raise RuntimeError(f"azurite exited with {proc.returncode}: {stderr.strip()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"azurite did not listen on 127.0.0.1:{port} within {START_TIMEOUT:g}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the whole process group (azurite-* is a node launcher script)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(5)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    else:
        with contextlib.suppress(ProcessLookupError):  # the launcher may be gone, a child not
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def azurite_table() -> Iterator[str]:
    """Connection string of a session-wide Azurite Table service (in memory)."""
    with azurite("table") as conn:
        yield conn


@pytest.fixture(scope="session")
def azurite_queue() -> Iterator[str]:
    """Connection string of a session-wide Azurite Queue service (in memory)."""
    with azurite("queue") as conn:
        yield conn


__all__ = [
    "ACCOUNT",
    "ACCOUNT_KEY",
    "azurite",
    "azurite_binary",
    "azurite_queue",
    "azurite_table",
    "closed_port",
    "connection_string",
    "free_port",
]

"""A real moto server (AWS stand-in) on 127.0.0.1, for tests of the AWS handler and its stores.

``moto_endpoint`` is a session-scoped pytest fixture yielding ``http://127.0.0.1:PORT``; a test
module makes it available with ``moto_endpoint = tests.services.moto.moto_endpoint``.
``aws_client(endpoint, "dynamodb")`` builds a client with fake credentials and small retries and
timeouts, so no test ever reads or uses the developer's real AWS configuration.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REGION = "us-east-1"
FAKE_KEY_ID = "testing"
FAKE_SECRET = "testing"  # moto accepts any keys; these are not credentials
START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port() -> int:
    """A port nothing listens on (bound and released: connections are refused at once)."""
    return free_port()


# moto_server answers on a thread per connection and its DynamoDB backend does not lock an
# item between evaluating a ConditionExpression and applying the write, so two racing
# conditional writes can both succeed (seen: 3 of 8 racing acquires of a new item won, and a
# reader got a half-written item). DynamoDB itself applies conditional writes to an item
# atomically. This launcher runs the same moto_server main() with every request handled under
# one lock, which restores that guarantee; the server is otherwise unchanged.
SERIAL_LAUNCHER = """
import sys, threading
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.server import main

_lock = threading.Lock()
_call = DomainDispatcherApplication.__call__


def _serial(self, environ, start_response):
    with _lock:
        return _call(self, environ, start_response)


DomainDispatcherApplication.__call__ = _serial
main(sys.argv[1:])
"""


def moto_server_command(*, serial: bool = True) -> list[str]:
    """The command that starts moto's server from this interpreter's environment (the venv):
    requests serialised (see SERIAL_LAUNCHER) unless ``serial`` is False, then ``moto_server``
    exactly as installed."""
    if serial:
        return [sys.executable, "-c", SERIAL_LAUNCHER]
    script = Path(sys.executable).with_name("moto_server")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "moto.server"]


@contextmanager
def moto_server(port: int | None = None, *, serial: bool = True) -> Iterator[str]:
    """Run moto's server in its own process group until the block ends; yields its endpoint."""
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        # The server must not pick up real AWS settings either.
        "AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "MOTO_PORT": str(port),
    }
    # A file, not a pipe: the server logs every request to stderr, and a pipe nobody reads
    # fills after about a thousand requests and then blocks the server.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [*moto_server_command(serial=serial), "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
            start_new_session=True,
        )
        try:
            _wait_ready(proc, endpoint, log)
            yield endpoint
        finally:
            _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], endpoint: str, log: Any = None) -> None:
    """Wait until the server answers; ``log`` is the file its stderr goes to (for the error)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            err = ""
            if log is not None:
                log.seek(0)
                err = log.read().decode(errors="replace")
            raise RuntimeError(f"moto_server exited with {proc.returncode}: {err[-2000:]}")
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"moto_server did not answer at {endpoint} in {START_TIMEOUT}s")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(5)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def reset(endpoint: str) -> None:
    """Forget every resource the server holds."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=5):
        pass


def aws_session() -> Any:
    """A boto3 session with fake keys and a fixed region: nothing from ~/.aws or AWS_PROFILE."""
    import boto3

    return boto3.session.Session(
        aws_access_key_id=FAKE_KEY_ID,
        aws_secret_access_key=FAKE_SECRET,
        region_name=REGION,
    )


def client_config(*, max_attempts: int = 2, connect_timeout: float = 2, read_timeout: float = 5):
    from botocore.config import Config

    return Config(
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )


def aws_client(endpoint: str, service: str, **config: Any) -> Any:
    """A boto3 client of ``service`` on the moto server at ``endpoint``."""
    return aws_session().client(service, endpoint_url=endpoint, config=client_config(**config))


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server shared by the whole test session: ``http://127.0.0.1:PORT``."""
    with pytest.MonkeyPatch.context() as mp:
        # Whatever builds clients without aws_client() still never reaches real AWS config.
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
            mp.delenv(name, raising=False)
        with moto_server() as endpoint:
            yield endpoint

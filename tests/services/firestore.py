"""Google's Firestore emulator (`gcloud emulators firestore start`) on 127.0.0.1, for tests of
the Firestore checkpoint store and the GCP handler.

- ``firestore_emulator``: session-scoped, yields the emulator's ``127.0.0.1:PORT``. It does not
  touch the environment: the Firestore client reads ``FIRESTORE_EMULATOR_HOST`` when it is
  built, so a test that builds clients (or stores, or handlers that build them) sets it for
  itself — with the ``firestore_env`` fixture, or ``monkeypatch.setenv``.
- ``firestore_env``: function-scoped, sets ``FIRESTORE_EMULATOR_HOST`` (and a project id) for
  the one test and returns the host; monkeypatch undoes it afterwards.
- ``raw_client(host)``: a plain ``firestore.Client`` on the emulator, for setup and tampering.

A test module makes the fixtures available with
``firestore_emulator = tests.services.firestore.firestore_emulator`` (likewise
``firestore_env``). If ``FIRESTORE_EMULATOR_HOST`` is already set when the session starts and an
emulator answers there (e.g. one started by a CI script), that one is used and left running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

PROJECT = "test-project"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
EMULATOR_ENV = "FIRESTORE_EMULATOR_HOST"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port() -> int:
    """A port nothing listens on (bound and released: connections are refused at once)."""
    return free_port()


def answers(host: str, timeout: float = 1.0) -> bool:
    """True when the emulator at ``host`` answers ``GET /`` with ``Ok``."""
    try:
        with urllib.request.urlopen(f"http://{host}/", timeout=timeout) as response:
            return response.status == 200 and response.read().strip() == b"Ok"
    except (urllib.error.URLError, OSError, ValueError):
        return False


@contextmanager
def emulator_env(host: str) -> Iterator[None]:
    """``FIRESTORE_EMULATOR_HOST=host`` while the block runs (for code outside a test)."""
    before = os.environ.get(EMULATOR_ENV)
    os.environ[EMULATOR_ENV] = host
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(EMULATOR_ENV, None)
        else:
            os.environ[EMULATOR_ENV] = before


def raw_client(host: str, project: str = PROJECT) -> Any:
    """A plain Firestore client on the emulator at ``host`` (anonymous credentials)."""
    from google.cloud import firestore

    with emulator_env(host):  # read once, when the client is built
        return firestore.Client(project=project)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a reused group id of another user
        return False
    return True


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop gcloud and the Java emulator it started: the whole process group, TERM then KILL."""
    pgid = proc.pid  # start_new_session: the group is led by gcloud
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(pgid):
                return
            time.sleep(0.1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_TIMEOUT)


def start_emulator(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start the emulator on a free port; returns the process and ``127.0.0.1:PORT`` once it
    answers. Raises RuntimeError (with the log's tail) if it does not within START_TIMEOUT."""
    if shutil.which("gcloud") is None:
        raise RuntimeError(
            "gcloud is not on PATH: the Firestore store tests need the Google Cloud SDK with "
            "the cloud-firestore-emulator component and Java"
        )
    host = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    env.pop(EMULATOR_ENV, None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["gcloud", "emulators", "firestore", "start", f"--host-port={host}"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # gcloud starts Java: stop the whole group at the end
        )
    deadline = time.monotonic() + START_TIMEOUT
    while not answers(host, timeout=0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_group(proc)
            tail = log.read_text(errors="replace")[-2000:]
            why = "exited" if proc.returncode is not None else f"did not answer in {START_TIMEOUT}s"
            raise RuntimeError(f"the Firestore emulator on {host} {why}; its output:\n{tail}")
        time.sleep(0.2)
    return proc, host


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Firestore emulator's ``127.0.0.1:PORT`` for the whole session."""
    existing = os.environ.get(EMULATOR_ENV)
    if existing and answers(existing):
        yield existing
        return
    proc, host = start_emulator(tmp_path_factory.mktemp("firestore") / "emulator.log")
    try:
        yield host
    finally:
        stop_group(proc)


@pytest.fixture
def firestore_env(firestore_emulator: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``FIRESTORE_EMULATOR_HOST`` and ``GOOGLE_CLOUD_PROJECT`` for this test only."""
    monkeypatch.setenv(EMULATOR_ENV, firestore_emulator)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    return firestore_emulator

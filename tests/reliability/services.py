"""Checkpoint-store services that can be stopped and started again on the same port, keeping
their data — a store outage followed by a restart, not a fresh empty store.

- moto (DynamoDB) keeps state in memory only: it runs with moto's request recorder on, and
  the restarted server is given the recorded requests again, in order (conditional writes
  replay to the same outcomes: every condition compares values carried in the request);
- Azurite (Table) persists to a workspace folder instead of memory;
- the Firestore emulator exports its data (its export endpoint) and the new one imports it.

Each service: `start()`, `stop()`, `store(now=...)` (a CheckpointStore on it, short timeouts).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.services import azurite, firestore, moto


def _stop_group(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


class MotoService:
    name = "dynamodb"

    def __init__(self, workdir: Path) -> None:
        self.port = moto.free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.recording = workdir / "moto-recording.jsonl"
        self.proc: subprocess.Popen[bytes] | None = None
        self.table = "esdb-relay-restart"

    def start(self) -> None:
        replay = self.recording.exists()
        previous = self.recording.read_text() if replay else ""
        if replay:
            self.recording.unlink()
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": moto.FAKE_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": moto.FAKE_SECRET,
            "AWS_DEFAULT_REGION": moto.REGION,
            "MOTO_PORT": str(self.port),
            "MOTO_ENABLE_RECORDING": "1",
            "MOTO_RECORDER_FILEPATH": str(self.recording),
        }
        self.proc = subprocess.Popen(
            [*moto.moto_server_command(), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        moto._wait_ready(self.proc, self.endpoint)  # type: ignore[arg-type]
        if replay:
            for line in previous.splitlines():
                self._send(json.loads(line))  # recorded again: a second restart works too
        else:
            from handlers.aws.checkpoint_store import create_table

            client = moto.aws_client(self.endpoint, "dynamodb")
            create_table(client, self.table)
            client.close()

    def _send(self, entry: dict[str, Any]) -> None:
        body = entry.get("body")
        data = base64.b64decode(body) if entry.get("body_encoded") else (body or "").encode()
        headers = {k: v for k, v in entry["headers"].items() if k != "Transfer-Encoding"}
        url = self.endpoint + entry["url"].split(f":{self.port}", 1)[-1]
        request = urllib.request.Request(url, data=data, headers=headers, method=entry["method"])
        try:
            with urllib.request.urlopen(request, timeout=10):
                pass
        except urllib.error.HTTPError:
            pass  # a refused conditional write is refused again, as it was the first time

    def stop(self) -> None:
        _stop_group(self.proc)
        self.proc = None

    def store(self, **options: Any) -> Any:
        from handlers.aws.checkpoint_store import DynamoDbCheckpointStore

        return DynamoDbCheckpointStore(
            self.table,
            session=moto.aws_session(),
            endpoint_url=self.endpoint,
            max_attempts=1,
            connect_timeout=1,
            read_timeout=3,
            **options,
        )


class AzuriteService:
    name = "azuretable"

    def __init__(self, workdir: Path) -> None:
        self.port = azurite.free_port()
        self.workspace = workdir / "azurite"
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.workspace / "azurite.log").open("ab")
        self.proc = subprocess.Popen(
            [
                azurite.azurite_binary("table"),
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
                str(self.port),
                "--location",
                str(self.workspace),  # on disk, so the data outlives the process
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--silent",
            ],
            cwd=self.workspace,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        if not azurite._wait_ready(
            self.proc, self.port, self.workspace / "azurite.log", last_attempt=True
        ):
            raise RuntimeError("azurite did not start")

    def stop(self) -> None:
        # Azurite saves its database on SIGINT (Ctrl-C); SIGTERM loses what is not autosaved.
        _stop_group(self.proc, signal.SIGINT)
        self.proc = None

    def store(self, **options: Any) -> Any:
        from handlers.azure.checkpoint_store import AzureTableCheckpointStore

        return AzureTableCheckpointStore(
            "esdbrelayrestart",
            connection_string=azurite.connection_string("table", self.port),
            retry_total=0,
            connection_timeout=1.0,
            read_timeout=3.0,
            **options,
        )


class FirestoreService:
    name = "firestore"

    def __init__(self, workdir: Path) -> None:
        self.port = firestore.free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.workdir = workdir
        self.export = workdir / "firestore-export"
        self.imported: Path | None = None  # the metadata file of the last export
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if shutil.which("gcloud") is None:
            raise RuntimeError("gcloud is not on PATH (Firestore emulator)")
        command = ["gcloud", "emulators", "firestore", "start", f"--host-port={self.host}"]
        if self.imported is not None:
            command.append(f"--import-data={self.imported}")
        env = {**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
        env.pop(firestore.EMULATOR_ENV, None)
        with (self.workdir / "firestore.log").open("ab") as out:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + firestore.START_TIMEOUT
        while not firestore.answers(self.host, timeout=0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Firestore emulator did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None:
            return
        # --export-on-exit does not export when gcloud is stopped by a signal here, so export
        # through the emulator's own endpoint first, then stop it.
        self.export.mkdir(parents=True, exist_ok=True)
        request = urllib.request.Request(
            f"http://{self.host}/emulator/v1/projects/{firestore.PROJECT}:export",
            data=json.dumps(
                {
                    "database": f"projects/{firestore.PROJECT}/databases/(default)",
                    "export_directory": str(self.export),
                }
            ).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30):
            pass
        self.imported = max(
            self.export.rglob("*.overall_export_metadata"), key=lambda p: p.stat().st_mtime
        )
        firestore.stop_group(self.proc)
        self.proc = None

    def store(self, **options: Any) -> Any:
        from handlers.gcp.checkpoint_store import FirestoreCheckpointStore

        with firestore.emulator_env(self.host):
            return FirestoreCheckpointStore(
                "esdb-relay-restart", project=firestore.PROJECT, timeout=3.0, **options
            )


SERVICES = {s.name: s for s in (MotoService, AzuriteService, FirestoreService)}

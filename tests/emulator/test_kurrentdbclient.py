"""The emulator driven through kurrentdbclient, esdbclient's successor.

kurrentdbclient needs grpcio >= 1.80 while esdbclient pins grpcio 1.71, so the two cannot share
the project's virtualenv: kurrentdbclient lives in `.venv-kurrent` (pinned in
kurrent-requirements.txt beside this file) and `kurrent_probe.py` runs there as a subprocess
against an emulator started here, printing one JSON line per check. Each check is one test.

A missing `.venv-kurrent` fails these tests instead of skipping them: CI creates it
(`make kurrent-env`), so its absence is a broken setup, not an optional extra.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esdb_emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("kurrent_probe.py")
REQUIREMENTS = Path(__file__).with_name("kurrent-requirements.txt")
KURRENT_PYTHON = Path(os.environ.get("KURRENT_PYTHON", ROOT / ".venv-kurrent" / "bin" / "python"))
PROBE_TIMEOUT = 120

CREATE_VENV = f"""\
create it with `make kurrent-env`, or:
    python3 -m venv .venv-kurrent
    .venv-kurrent/bin/python -m pip install uv
    .venv-kurrent/bin/uv pip install --python .venv-kurrent/bin/python \\
        -r {REQUIREMENTS.relative_to(ROOT)}
(or point KURRENT_PYTHON at a python that has kurrentdbclient)"""

# Every check kurrent_probe.py runs, in its order; the TLS ones only against a TLS emulator.
CHECKS = [
    "connect",
    "append_single",
    "append_batch",
    "append_idempotent",
    "wrong_current_version",
    "expected_exists_and_no_stream",
    "get_stream",
    "get_stream_not_found",
    "get_current_version",
    "read_all",
    "read_all_commit_position",
    "read_all_filters",
    "get_commit_position",
    "stream_metadata",
    "metadata_events_filtered",
    "subscribe_to_all",
    "subscribe_to_all_filtered",
    "subscribe_to_stream",
    "delete_stream",
    "tombstone_stream",
    "persistent_create_stream",
    "persistent_create_all",
    "persistent_list",
    "persistent_get_info",
    "persistent_extra_statistics",
    "persistent_update",
    "persistent_delete",
    "read_gossip",
    "discover_connection",
    "v2_multi_append_unimplemented",
]
TLS_CHECKS = ["tls_ca_file", "tls_bad_credentials"]
MODES = {"plaintext": CHECKS, "tls": CHECKS + TLS_CHECKS}


class ProbeRun:
    def __init__(self, uri: str, proc: subprocess.CompletedProcess[str]) -> None:
        self.uri = uri
        self.returncode = proc.returncode
        self.stderr = proc.stderr
        self.results: dict[str, dict[str, Any]] = {}
        self.summary: dict[str, Any] | None = None
        self.unparsed: list[str] = []
        for line in proc.stdout.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                self.unparsed.append(line)
                continue
            if record.get("summary"):
                self.summary = record
            elif "check" in record:
                self.results[record["check"]] = record
            else:
                self.unparsed.append(line)

    def context(self) -> str:
        tail = "\n".join(self.stderr.strip().splitlines()[-15:])
        return f"probe against {self.uri} exited {self.returncode}; stderr tail:\n{tail}"


def _run_probe(db: Emulator) -> ProbeRun:
    if not KURRENT_PYTHON.exists():
        pytest.fail(
            f"{KURRENT_PYTHON} does not exist: kurrentdbclient's virtualenv is missing;\n"
            f"{CREATE_VENV}",
            pytrace=False,
        )
    env = dict(os.environ, PYTHONUNBUFFERED="1", GRPC_VERBOSITY="ERROR")
    env.pop("PYTHONPATH", None)
    uri = db.connection_string()
    try:
        proc = subprocess.run(
            [str(KURRENT_PYTHON), str(PROBE), uri],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            env=env,
            cwd=ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"kurrent_probe.py did not finish in {PROBE_TIMEOUT}s; output so far:\n{out}")
    run = ProbeRun(uri, proc)
    if "ModuleNotFoundError" in proc.stderr and not run.results:
        pytest.fail(
            f"{KURRENT_PYTHON} cannot import kurrentdbclient;\n{CREATE_VENV}\n{run.context()}",
            pytrace=False,
        )
    return run


@pytest.fixture(scope="module")
def probe_runs() -> Iterator[dict[str, ProbeRun]]:
    """Runs the probe at most once per mode for the whole module, on first use."""
    runs: dict[str, ProbeRun] = {}
    yield runs


def _probe(mode: str, runs: dict[str, ProbeRun]) -> ProbeRun:
    if mode not in runs:
        with Emulator(tls=mode == "tls") as db:
            runs[mode] = _run_probe(db)
    return runs[mode]


CASES = [pytest.param(mode, check, id=f"{mode}-{check}") for mode in MODES for check in MODES[mode]]


@pytest.mark.parametrize(("mode", "check"), CASES)
def test_kurrentdbclient_check(mode: str, check: str, probe_runs: dict[str, ProbeRun]) -> None:
    run = _probe(mode, probe_runs)
    result = run.results.get(check)
    assert result is not None, f"the probe reported no {check!r} check\n{run.context()}"
    assert result["ok"], f"{check} failed: {json.dumps(result['detail'], default=str)}"


@pytest.mark.parametrize("mode", list(MODES))
def test_probe_ran_every_check(mode: str, probe_runs: dict[str, ProbeRun]) -> None:
    run = _probe(mode, probe_runs)
    assert run.summary is not None, f"no summary line: the probe died\n{run.context()}"
    assert list(run.results) == MODES[mode], "CHECKS here and kurrent_probe.py disagree"
    failed = [name for name, r in run.results.items() if not r["ok"]]
    assert run.summary["failed"] == failed
    assert run.returncode == (1 if failed else 0), run.context()
    assert not run.unparsed, f"unexpected output lines: {run.unparsed[:5]}"

"""`esdb-relay cutover` in process (typer's CliRunner) against TLS emulators: exit codes, the
prompt, the printed checkpoints and report files, and no password in the output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import typer
from esdbclient import EventStoreDBClient, NewEvent, StreamState
from typer.testing import CliRunner

from esdb_emulator import Emulator
from handlers.cli.cutover_cmd import cutover
from tests.engine.helpers import make_job, run_until_caught_up

PASSWORD = "changeit"
ROOT = Path(__file__).resolve().parents[2]
FAST = ["--poll-seconds", "0.05", "--quiet-seconds", "0.3"]

app = typer.Typer()
app.command("cutover")(cutover)
app.command("other")(lambda: None)  # two commands: `cutover` is then invoked by name
runner = CliRunner()


def event(n: int) -> NewEvent:
    return NewEvent(type="Placed", data=json.dumps({"n": n}).encode(), id=uuid.uuid4())


@pytest.fixture
def setup(tmp_path):
    with Emulator(tls=True) as source, Emulator(tls=True) as target:
        with EventStoreDBClient(source.uri) as client:
            for n in range(12):
                client.append_to_stream(
                    f"order-{n % 3}", current_version=StreamState.ANY, events=[event(n)]
                )
        job = make_job(source, target, tmp_path)
        env = {
            "ESDB_RELAY_JOB_ID": job.job_id,
            "ESDB_RELAY_SOURCE": source.uri,
            "ESDB_RELAY_TARGET": target.uri,
            "ESDB_RELAY_CHECKPOINT_STORE": job.checkpoint_store,
        }
        yield source, job, env


def invoke(args: list[str], env: dict[str, str], tmp_path: Path, input: str | None = None):
    result = runner.invoke(
        app,
        ["cutover", *FAST, "--report-dir", str(tmp_path / "reports"), *args],
        env=env,
        input=input,
    )
    assert PASSWORD not in result.output, "a password reached the CLI output"
    return result


def reports(tmp_path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "reports").glob("*.json"))]


def test_refuses_while_behind_then_completes_with_run_relay(setup, tmp_path):
    _, _, env = setup
    refused = invoke(["--yes"], env, tmp_path)
    assert refused.exit_code == 3, refused.output
    assert "REFUSED" in refused.output and "not caught up" in refused.output
    assert "12 event(s) not copied yet" in refused.output
    assert "report:" in refused.output

    checkpoints = tmp_path / "cps.csv"
    checkpoints.write_text("name,kind,stream,position,revision\nview,stream,order-1,,1\n")
    done = invoke(
        ["--yes", "--wait", "--run-relay", "--checkpoints", str(checkpoints)], env, tmp_path
    )
    assert done.exit_code == 0, done.output
    assert "COMPLETED" in done.output
    assert "--yes: taking it that the writers are being stopped" in done.output
    assert "catch-up subscription checkpoints" in done.output
    assert "order-1 @ 1" in done.output
    assert "next:" in done.output and "point every writer and reader at the target" in done.output
    assert "re-create" not in done.output  # no persistent subscription to re-create
    data = [r for r in reports(tmp_path) if r["outcome"] == "completed"]
    assert len(data) == 1 and data[0]["verify"]["ok"]
    assert data[0]["catch_up_checkpoints"][0]["target_revision"] == "1"  # CSV keeps text


def run_cli(args: list[str], env: dict[str, str], stdin) -> subprocess.CompletedProcess:
    """`esdb-relay` in a subprocess: the real stdin (a terminal or not) and the real exit."""
    return subprocess.run(
        [sys.executable, "-m", "handlers.cli.main", *args],
        cwd=ROOT,
        env={**os.environ, **env, "COLUMNS": "200"},
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def answered_on_a_terminal(args: list[str], env: dict[str, str], answer: str):
    """The cutover with a pseudo-terminal as its stdin, `answer` typed into it."""
    master, slave = os.openpty()
    try:
        os.write(master, answer.encode())
        return run_cli(args, env, slave)
    finally:
        os.close(slave)
        os.close(master)


def test_prompt_declined_aborts_and_accepted_continues(setup, tmp_path):
    _, job, env = setup
    run_until_caught_up(job)
    args = ["cutover", *FAST, "--report-dir", str(tmp_path / "reports")]
    declined = answered_on_a_terminal(args, env, "n\n")
    assert declined.returncode == 4, declined.stdout + declined.stderr
    assert "Stop every workload that writes to the source now" in declined.stdout
    assert "Are all the writers stopped?" in declined.stdout and "ABORTED" in declined.stdout
    accepted = answered_on_a_terminal(args, env, "y\n")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert [r["outcome"] for r in reports(tmp_path)].count("completed") == 1


def test_without_a_terminal_refuses_with_exit_4_and_a_report(setup, tmp_path):
    _, job, env = setup
    run_until_caught_up(job)
    args = ["cutover", *FAST, "--report-dir", str(tmp_path / "reports")]
    result = run_cli(args, env, subprocess.DEVNULL)  # CI, `< /dev/null`, no --yes
    output = result.stdout + result.stderr
    assert result.returncode == 4, output
    assert "Aborted." not in output
    assert "no terminal to ask whether the writers are stopped" in output and "--yes" in output
    assert "point every writer" not in output
    (data,) = reports(tmp_path)
    assert data["outcome"] == "aborted" and data["steps"] == []
    assert PASSWORD not in output


def test_usage_errors_exit_2(setup, tmp_path):
    _, _, env = setup
    missing = invoke(["--checkpoints", str(tmp_path / "none.jsonl")], env, tmp_path)
    assert missing.exit_code == 2 and "no such file" in missing.output
    bad_env = {**env, "ESDB_RELAY_SOURCE": "http://nope"}
    config = invoke(["--yes"], bad_env, tmp_path)
    assert config.exit_code == 2 and "configuration error" in config.output
    as_file = tmp_path / "file"
    as_file.write_text("")
    result = runner.invoke(app, ["cutover", "--report-dir", str(as_file)], env=env)
    assert result.exit_code == 2 and "is a file" in result.output


def test_sigint_stops_the_cutover_with_a_report(setup, tmp_path):
    _, job, env = setup
    run_until_caught_up(job)
    reports_dir = tmp_path / "reports"
    args = ["cutover", "--yes", "--quiet-seconds", "600", "--report-dir", str(reports_dir)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "handlers.cli.main", *args],
        cwd=ROOT,
        env={**os.environ, **env, "COLUMNS": "120"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # the prompt's text comes just before the quiet watch
            seen.append(line)
            if "taking it that the writers are being stopped" in line:
                break
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(seen) + rest
    assert proc.returncode == 4, output
    assert "ABORTED" in output and "interrupted by the operator" in output
    assert PASSWORD not in output
    (data,) = reports(tmp_path)
    assert data["outcome"] == "aborted" and data["steps"][-1]["name"] == "writers"


def test_a_configuration_error_writes_a_report_that_nothing_was_done(setup, tmp_path):
    """The configuration given to cutover is wrong (a ConfigError before the first step): the
    result printed and the report written say the cutover did not start and why, whole (no
    temporary file left), with no password in either."""
    _, job, env = setup
    bad = {**env, "ESDB_RELAY_SOURCE": f"http://admin:{PASSWORD}@nope:2113"}
    result = invoke(["--yes"], bad, tmp_path)
    assert result.exit_code == 2, result.output
    assert "the cutover did not start, nothing was done: configuration error" in result.output
    assert "report: " in result.output
    (data,) = reports(tmp_path)
    assert data["job_id"] == job.job_id
    assert (data["outcome"], data["exit_code"], data["steps"]) == ("error", 2, [])
    assert "invalid job configuration" in data["message"] and "source" in data["message"]
    assert data["next_steps"][0].startswith("keep the clients on the source")
    assert "run cutover again" in data["next_steps"][-1]
    written = sorted((tmp_path / "reports").iterdir())
    assert [p.suffix for p in written] == [".json", ".md"]
    for path in written:
        assert PASSWORD not in path.read_text()
    assert "did not start" in written[0].with_suffix(".md").read_text()
    # A missing --checkpoints file is refused the same way, with its own report.
    missing = invoke(["--yes", "--checkpoints", str(tmp_path / "none.jsonl")], env, tmp_path)
    assert missing.exit_code == 2 and "no such file" in missing.output
    assert "did not start" in missing.output

"""`esdb-relay plan` against emulators: the store counted, or estimated and said so; the
write path the target offers; K, hours and dollars per cloud; clear errors."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from esdb_emulator import Emulator
from esdb_emulator.store import ANY, ProposedEvent
from handlers.cli.main import app
from tests.passwords import TEST_PASSWORDS

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
PAYLOAD = b'{"amount": 1234, "currency": "EUR", "note": "' + b"x" * 200 + b'"}'


def add(db: Emulator, streams: int, per_stream: int) -> None:
    """`streams` streams of equal names' length, `per_stream` same-size events each."""
    for s in range(streams):
        db.store.append(
            f"order-{s:04d}",
            ANY,
            [
                ProposedEvent(str(uuid.uuid4()), "Placed", "application/json", PAYLOAD)
                for _ in range(per_stream)
            ],
        )


def env_for(source: Emulator, target: Emulator, tmp_path, **extra: str) -> dict[str, str]:
    return {
        "ESDB_RELAY_JOB_ID": "plan-job",
        "ESDB_RELAY_SOURCE": source.uri,
        "ESDB_RELAY_TARGET": target.uri,
        "ESDB_RELAY_CHECKPOINT_STORE": f"sqlite:///{tmp_path}/cp.db",
        **extra,
    }


def plan(args: list[str], env: dict[str, str]):
    return runner.invoke(app, ["plan", *args], env=env)


def answer(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def on_26_1():
    with Emulator() as source, Emulator(server_version="26.1") as target:
        yield source, target


def test_a_small_store_is_counted_exactly_and_the_target_offers_append_records(on_26_1, tmp_path):
    source, target = on_26_1
    add(source, 30, 100)  # 3,000 events, and the system records the emulator seeds
    got = answer(plan(["--json"], env_for(source, target, tmp_path)))
    store = got["store"]
    assert store["exact"] is True and store["events"] == 3_000
    assert store["records"] > 3_000  # $all's system records are scanned, not copied
    assert store["basis"].startswith("counted")
    assert got["write_path"] == "append-records" and "AppendRecords" in got["write_path_basis"]
    assert {c["cloud"] for c in got["clouds"]} == {"aws", "gcp", "azure"}
    for cloud in got["clouds"]:
        # 3,000 events: one chain, well within a day, bound by the process itself
        assert cloud["sharded"]["shards"] == 1
        assert cloud["sharded"]["bound"] == "per-process rate"
        assert 0 < cloud["sharded"]["hours"] < 1 and cloud["sharded"]["usd"] > 0


def test_a_large_store_is_estimated_from_positions_and_says_so(on_26_1, tmp_path):
    source, target = on_26_1
    add(source, 40, 500)  # 20,000 events
    got = answer(plan(["--json", "--count-up-to", "2000"], env_for(source, target, tmp_path)))
    store = got["store"]
    assert store["exact"] is False
    assert store["basis"].startswith("estimated, not counted")
    assert "2,000" in store["basis"]  # the sample it is based on
    # equal-size events: the positions' spacing gives the count within a few percent (the
    # seeded system records at the start are smaller than the events)
    assert store["events"] == pytest.approx(20_000, rel=0.03)
    text = plan(["--count-up-to", "2000"], env_for(source, target, tmp_path))
    assert text.exit_code == 0, text.output
    assert "estimated, not counted" in " ".join(text.output.split())


def test_the_write_path_follows_the_target_and_the_job(tmp_path):
    with Emulator() as source, Emulator(server_version="25.1") as target:
        add(source, 2, 10)
        env = env_for(source, target, tmp_path)
        assert answer(plan(["--json"], env))["write_path"] == "multi-append"
        off = answer(plan(["--json"], {**env, "ESDB_RELAY_MULTI_APPEND": "false"}))
        assert (
            off["write_path"] == "per-stream" and "multi_append = false" in off["write_path_basis"]
        )
    with Emulator() as source, Emulator(server_version="24.10") as target:
        add(source, 2, 10)
        old = answer(plan(["--json"], env_for(source, target, tmp_path)))
        assert old["write_path"] == "per-stream"


def test_a_billion_events_shard_per_cloud_with_the_order_caveat(on_26_1, tmp_path):
    source, target = on_26_1
    env = env_for(source, target, tmp_path)
    got = answer(plan(["--json", "--events", "1000000000"], env))
    assert got["store"]["basis"].startswith("given")
    for cloud in got["clouds"]:
        one, sharded = cloud["one_chain"], cloud["sharded"]
        assert one["shards"] == 1 and one["hours"] > 24
        assert sharded["shards"] > 1 and sharded["within_target"] and sharded["hours"] <= 24
        assert any("global order is not kept across shards" in n for n in sharded["notes"])
    text = plan(["--events", "1000000000", "--target-hours", "48"], env)
    assert text.exit_code == 0, text.output
    flat = " ".join(text.output.split())
    for label in ("AWS Lambda", "GCP Cloud Functions", "Azure Functions"):
        assert label in flat
    assert "within 48 hours" in flat and "global order is not kept" in flat
    assert "assumptions:" in flat and "not given: assumed to keep up" in flat


def test_a_slow_target_bounds_the_copy_and_the_answer_says_so(on_26_1, tmp_path):
    source, target = on_26_1
    env = env_for(source, target, tmp_path)
    got = answer(plan(["--json", "--events", "1000000000", "--target-size", "C4"], env))
    for cloud in got["clouds"]:
        sharded = cloud["sharded"]
        assert sharded["bound"] == "target write capacity"
        assert sharded["within_target"] is False
        assert sharded["hours"] == pytest.approx(1e9 / 1_000 / 3600)
        assert "cannot finish within 24 h" in sharded["notes"][0]
    assert "C4-sized" in got["target_write"]["basis"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--target-size", "M99"], "no write capacity is documented for size 'M99'"),
        (["--target-size", "C4", "--target-write-rate", "5000"], "not both"),
        (["--target-hours", "0"], "--target-hours"),
        (["--events", "-5"], "--events"),
        (["--max-shards", "0"], "--max-shards"),
    ],
)
def test_bad_input_is_refused_with_what_to_do(on_26_1, tmp_path, args, says):
    source, target = on_26_1
    result = plan(args, env_for(source, target, tmp_path))
    assert result.exit_code == 2
    assert says in " ".join(result.output.split())


def test_an_empty_source_has_nothing_to_plan(tmp_path):
    with Emulator(seed_system_events=False) as source, Emulator() as target:
        result = plan([], env_for(source, target, tmp_path))
        assert result.exit_code == 2
        assert "holds no events this job copies" in result.output
        assert "--events" in result.output


def test_over_tls_with_credentials_and_one_chain_only(tmp_path):
    with Emulator(tls=True) as source, Emulator(tls=True, server_version="26.1") as target:
        add(source, 3, 10)
        env = env_for(source, target, tmp_path)
        result = plan(["--json", "--max-shards", "1", "--target-hours", "0.01"], env)
        got = answer(result)
        assert got["store"]["events"] == 30 and got["write_path"] == "append-records"
        assert all(c["sharded"]["shards"] == 1 for c in got["clouds"])
        big = answer(plan(["--json", "--max-shards", "1", "--events", "1000000000"], env))
        for cloud in big["clouds"]:
            assert cloud["sharded"]["shards"] == 1 and not cloud["sharded"]["within_target"]
            assert "max shards 1" in cloud["sharded"]["notes"][0]
            assert not any("global order" in n for n in cloud["sharded"]["notes"])
        for text in (result.output, json.dumps(big)):
            assert TEST_PASSWORDS["emulator admin (esdb_emulator DEFAULT_USERS)"] not in text


def test_an_unreachable_source_is_named_and_no_secret_is_printed(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Emulator(tls=True) as target:
        password = "Sec-Guard-9x7Q2"
        assert password in TEST_PASSWORDS.values()
        env = {
            "ESDB_RELAY_JOB_ID": "plan-job",
            "ESDB_RELAY_SOURCE": f"esdb://admin:{password}@127.0.0.1:{port}?tls=false",
            "ESDB_RELAY_TARGET": target.uri,
            "ESDB_RELAY_CHECKPOINT_STORE": f"sqlite:///{tmp_path}/cp.db",
        }
        result = plan(["--connect-timeout", "1"], env)
        assert result.exit_code == 1
        assert "source" in result.output
        assert password not in result.output


def test_the_figures_are_in_the_wheel(tmp_path):
    """`plan` reads core/capacity_figures.json: setuptools packs it only because pyproject
    names it (package-data); build_py lays out what a wheel holds."""
    setup = [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q"]
    setup += ["egg_info", "--egg-base", str(tmp_path), "build_py", "-d", str(tmp_path / "lib")]
    done = subprocess.run(setup, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    built = tmp_path / "lib" / "core" / "capacity_figures.json"
    assert built.read_text() == (REPO / "core" / "capacity_figures.json").read_text()

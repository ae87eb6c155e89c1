"""`esdb-relay status` of a sharded job: the job as one, then a row per shard (real emulators,
`esdb-relay run --shard I` for the shards that ran)."""

from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

from esdb_emulator import Emulator
from esdb_emulator.store import ANY, ProposedEvent
from handlers.cli.main import app

runner = CliRunner()


@pytest.fixture
def pair():
    with Emulator() as source, Emulator() as target:
        yield source, target


def test_status_shows_the_job_as_one_then_each_shard(pair, tmp_path):
    source, target = pair
    for n in range(40):
        source.store.append(
            f"order-{n:02d}",
            ANY,
            [ProposedEvent(str(uuid.uuid4()), "Placed", "application/json", b"{}")] * 1,
        )
    env = {
        "ESDB_RELAY_JOB_ID": "sharded-job",
        "ESDB_RELAY_SOURCE": source.uri,
        "ESDB_RELAY_TARGET": target.uri,
        "ESDB_RELAY_CHECKPOINT_STORE": f"sqlite:///{tmp_path}/cp.db",
        "ESDB_RELAY_SHARDS": "3",
    }
    for shard in ("0", "2"):  # shard 1 never runs
        done = runner.invoke(
            app, ["run", "--shard", shard, "--until-caught-up", "--no-progress"], env=env
        )
        assert done.exit_code == 0, done.output
    shown = runner.invoke(app, ["status", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    figures = json.loads(shown.stdout)
    shards = figures["shards"]
    assert [s["key"] for s in shards] == [f"sharded-job.shard-{i}" for i in range(3)]
    assert [s["caught_up"] for s in shards] == [True, False, True]
    assert shards[1]["state"] == "not-started" and shards[1]["lag_events"] > 0
    assert figures["lag_events"] == shards[1]["lag_events"] and not figures["caught_up"]
    assert figures["state"] == "behind-and-not-running"
    assert figures["events_written"] == shards[0]["events_written"] + shards[2]["events_written"]
    text = runner.invoke(app, ["status"], env=env)
    assert text.exit_code == 0, text.output
    assert "3 shards (global order is not kept across shards" in text.output
    rows = {
        cells[1].strip(): cells[2].strip()
        for line in text.output.splitlines()
        if len(cells := line.split("│")) > 3 and cells[1].strip() in ("0", "1", "2")
    }
    assert rows["0"] == rows["2"] == "idle" and rows["1"].startswith("not-")
    assert "shard(s) 1 have events to copy" in " ".join(text.output.split())

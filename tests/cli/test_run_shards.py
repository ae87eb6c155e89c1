"""`esdb-relay run --shard I`: a job split into shards runs one process per shard; the CLI
asks for --shard when the job has several, refuses one out of range or for a job of one
chain, names the shard it runs; a backfill of a sharded job runs the same way, one process per
shard of the range."""

from __future__ import annotations

from core.checkpoint import open_store
from esdb_emulator import Emulator
from tests.cli.test_cli import env_for, invoke, seed
from tests.engine.helpers import differences


def test_each_shard_runs_as_its_own_process_and_together_they_copy_the_source(tmp_path):
    with Emulator() as source, Emulator() as target:
        seed(source, streams=12, events=5)
        env = env_for(source, target, tmp_path, ESDB_RELAY_SHARDS="3")
        for index in range(3):
            result = invoke(
                ["run", "--until-caught-up", "--no-progress", "--shard", str(index)], env
            )
            assert result.exit_code == 0, result.output
            assert f"shard {index} of 3 of job 'cli-job'" in result.output
            assert "global order is not kept across shards" in result.output
        assert differences(source.store, target.store) == []


def test_a_sharded_job_without_shard_says_how_to_run_it(tmp_path):
    with Emulator() as source, Emulator() as target:
        env = env_for(source, target, tmp_path, ESDB_RELAY_SHARDS="4")
        result = invoke(["run", "--until-caught-up", "--no-progress"], env)
        assert result.exit_code == 2
        assert "this job has 4 shards: run one process per shard with --shard 0..3" in (
            " ".join(result.output.split())
        )
        result = invoke(["run", "--until-caught-up", "--no-progress", "--shard", "4"], env)
        assert result.exit_code == 2
        assert "--shard 4 is out of range: this job has 4 shards, numbered 0..3" in (
            " ".join(result.output.split())
        )
        result = invoke(["backfill", "--from", "0", "--to", "10"], env)
        assert result.exit_code == 2
        assert "--shard 0..3" in result.output
        result = invoke(["backfill", "--from", "0", "--shard", "1"], env)
        assert result.exit_code == 2
        assert "--to is needed for a job split into shards" in result.output


def test_a_range_of_a_sharded_job_is_copied_shard_by_shard(tmp_path):
    """`backfill --shard I` copies shard I's part of the range under `RANGE.shard-I`; the
    range is split by a plan of its own, stored in the range's record."""
    with Emulator() as source, Emulator() as target:
        seed(source, streams=12, events=5)
        end = list(source.store.iter_all())[-1].position
        env = env_for(source, target, tmp_path, ESDB_RELAY_SHARDS="3")
        empty = len(target.store)  # the server's own records
        planned = invoke(
            ["backfill", "--from", "0", "--to", str(end), "--shard", "2", "--dry-run"], env
        )
        assert planned.exit_code == 0, planned.output
        assert len(target.store) == empty
        for index in range(3):
            args = ["backfill", "--from", "0", "--to", str(end), "--shard", str(index)]
            result = invoke(args, env)
            assert result.exit_code == 0, result.output
            assert f"shard {index} of 3 of job 'cli-job.backfill-0-{end}'" in result.output
        assert differences(source.store, target.store) == []
        store = open_store(f"sqlite:///{tmp_path}/cp.db")
        for index in range(3):
            checkpoint = store.load(f"cli-job.backfill-0-{end}.shard-{index}")
            assert checkpoint is not None and checkpoint.position is not None
            assert checkpoint.position.commit == end
        # Run again: everything is there already, nothing is written twice.
        before = len(target.store)
        for index in range(3):
            args = ["backfill", "--from", "0", "--to", str(end), "--shard", str(index)]
            assert invoke(args, env).exit_code == 0
        assert len(target.store) == before


def test_shard_on_a_job_of_one_chain_is_refused(tmp_path):
    with Emulator() as source, Emulator() as target:
        env = env_for(source, target, tmp_path)
        result = invoke(["run", "--until-caught-up", "--no-progress", "--shard", "0"], env)
        assert result.exit_code == 2
        assert "not split into shards" in result.output


def test_a_changed_shard_count_is_refused_with_the_way_out(tmp_path):
    with Emulator() as source, Emulator() as target:
        seed(source)
        env = env_for(source, target, tmp_path, ESDB_RELAY_SHARDS="2")
        assert (
            invoke(["run", "--until-caught-up", "--no-progress", "--shard", "0"], env).exit_code
            == 0
        )
        env["ESDB_RELAY_SHARDS"] = "3"
        result = invoke(["run", "--until-caught-up", "--no-progress", "--shard", "0"], env)
        assert result.exit_code == 2, result.output
        assert "split into 2 shards" in result.output
        assert "set shards = 2" in " ".join(result.output.split())

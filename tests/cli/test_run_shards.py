"""`esdb-relay run --shard I`: a job split into shards runs one process per shard; the CLI
asks for --shard when the job has several, refuses one out of range or for a job of one
chain, names the shard it runs, and refuses a backfill of a sharded job (not built)."""

from __future__ import annotations

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
        result = invoke(["backfill", "--from", "0"], env)
        assert result.exit_code == 2
        assert "backfill of a job split into 4 shards is not built yet" in result.output


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

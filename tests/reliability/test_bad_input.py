"""Bad configurations: each is refused with a line naming the setting and the fix, through env
vars, a config file (TOML, YAML, JSON, malformed) and a payload; the CLI exits 2 with that line
and no traceback; nothing is written to the target or the checkpoint store.

tests/unit/test_config.py covers the validator's wording case by case; this corpus covers the
paths a bad value takes (each source, the CLI, each cloud's secret lookup).
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from core.config import JobConfig
from core.errors import ConfigError
from esdb_emulator import Emulator
from handlers.cli.main import app
from tests.passwords import TEST_PASSWORDS
from tests.services.moto import REGION, moto_endpoint  # noqa: F401 - fixture

PASSWORD = TEST_PASSWORDS["tests/security password"]
GOOD = {
    "job_id": "bad-input",
    "source": f"esdb://admin:{PASSWORD}@source.internal:2113",
    "target": f"esdb://admin:{PASSWORD}@target.internal:2113",
}

# (settings that differ from GOOD, the field named, words of the fix)
CORPUS = [
    ({"budget": {"max_events": "many"}}, "budget.max_events", "whole number"),
    ({"budget": {"max_events": 0}}, "budget.max_events", ">= 1"),
    ({"budget": {"deadline_seconds": -1}}, "budget.deadline_seconds", "> 0"),
    ({"partitions": 999, "mode": "partitioned"}, "partitions", "1-256"),
    ({"lease_ttl_seconds": "soon"}, "lease_ttl_seconds", "number"),
    ({"dead_letter": "perhaps"}, "dead_letter", "true or false"),
    ({"mode": "fast"}, "mode", "'ordered' or 'partitioned'"),
    ({"filters": {"include_streams": ["(unclosed"]}}, "filters.include_streams[0]", "pattern"),
    ({"filters": {"exclude_event_types": "^\\$"}}, "filters.exclude_event_types", "list"),
    ({"filters": {"streams": ["^a"]}}, "filters.streams", "valid settings here"),
    ({"sourse": GOOD["source"]}, "sourse", "spelling"),
    ({"job_id": "has spaces"}, "job_id", "letters, digits"),
    ({"transform": "not a function"}, "transform", "module:function"),
    ({"checkpoint_store": "ftp://host/x"}, "checkpoint_store", "sqlite"),
    ({"checkpoint_store": "sqlite://relative.db"}, "checkpoint_store", "sqlite:///"),
    ({"source": "http://admin:" + PASSWORD + "@h:2113"}, "source", "esdb://"),
    ({"source": f"esdb://admin:{PASSWORD}@h:2113?tls=maybe"}, "source", "invalid option"),
    ({"source": f"esdb://admin:{PASSWORD}@h:2113?tlsCafile=/ca.pem&bogus=1"}, "source", "BOGUS"),
    ({"target": f"esdb://admin:{PASSWORD}@h:2113,:1"}, "target", "no host"),
    (
        {"target": "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/t)"},
        "target",
        "unresolved secret reference",
    ),
]


def without_secrets(text: str) -> None:
    assert PASSWORD not in text
    assert "Traceback" not in text


def check(error: ConfigError, field: str, fix: str) -> None:
    text = str(error)
    without_secrets(text)
    line = next((p for p in error.problems if p.startswith(field + ":")), None)
    assert line is not None, f"{field} not named in: {text}"
    assert fix.lower() in line.lower(), line


def settings(change: dict) -> dict:
    merged = {**GOOD, **change}
    if "sourse" in change:
        del merged["source"]
    return merged


@pytest.mark.parametrize(("change", "field", "fix"), CORPUS, ids=[c[1] for c in CORPUS])
def test_payload(change, field, fix):
    with pytest.raises(ConfigError) as raised:
        JobConfig.from_payload(settings(change))
    check(raised.value, field, fix)


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
@pytest.mark.parametrize(("change", "field", "fix"), CORPUS[::3], ids=[c[1] for c in CORPUS[::3]])
def test_file(tmp_path, suffix, change, field, fix):
    path = tmp_path / f"job{suffix}"
    path.write_text(dump(settings(change), suffix))
    with pytest.raises(ConfigError) as raised:
        JobConfig.load(file=path)
    check(raised.value, field, fix)


def dump(data: dict, suffix: str) -> str:
    if suffix == ".json":
        return json.dumps(data)
    if suffix == ".yaml":
        import yaml

        return yaml.safe_dump(data)
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append(
                f"[{key}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
            )
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines + tables) + "\n"


@pytest.mark.parametrize(
    ("change", "field", "fix"),
    [c for c in CORPUS if c[1] not in ("sourse", "filters.streams")][::2],
    ids=lambda v: v if isinstance(v, str) and "." in v else None,
)
def test_env(monkeypatch, change, field, fix):
    for key, value in settings(change).items():
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                text = subvalue if isinstance(subvalue, str) else json.dumps(subvalue)
                monkeypatch.setenv(f"ESDB_RELAY_{key.upper()}__{sub.upper()}", text)
        else:
            monkeypatch.setenv(f"ESDB_RELAY_{key.upper()}", str(value))
    with pytest.raises(ConfigError) as raised:
        JobConfig.load()
    check(raised.value, field, fix)


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        ("job.toml", 'job_id = "x"\nsource = "esdb://admin:' + PASSWORD + "@h", "not valid TOML"),
        ("job.yaml", "job_id: [x\nsource: esdb://admin:" + PASSWORD + "@h\n", "not valid YAML"),
        ("job.json", '{"job_id": "x", "source": "esdb://admin:' + PASSWORD, "not valid JSON"),
        ("job.yaml", "- just\n- a list\n", "must hold a table"),
        ("job.ini", "job_id = x\n", "unsupported file type"),
    ],
    ids=["toml", "yaml", "json", "yaml-list", "ini"],
)
def test_malformed_file_through_the_cli(tmp_path, monkeypatch, name, text, said):
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text(text)
    result = CliRunner().invoke(app, ["status", "-c", str(tmp_path / name)])
    assert result.exit_code == 2, result.output
    assert said in " ".join(result.output.split())  # rich wraps long lines
    without_secrets(result.output)
    assert list(tmp_path.iterdir()) == [tmp_path / name], "nothing may be written"


def test_cli_bad_settings_exit_2_and_write_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Emulator() as source, Emulator() as target:
        store = tmp_path / "checkpoints.db"
        job = tmp_path / "job.toml"
        job.write_text(
            dump(
                {
                    "job_id": "cli-bad",
                    "source": source.uri,
                    "target": target.uri,
                    "checkpoint_store": f"sqlite:///{store}",
                    "budget": {"max_events": -5},
                    "filters": {"include_streams": ["[z-a]"]},
                },
                ".toml",
            )
        )
        before = target.store.last_position
        result = CliRunner().invoke(app, ["run", "--until-caught-up", "-c", str(job)])
        assert result.exit_code == 2
        assert (
            "budget.max_events" in result.output and "filters.include_streams[0]" in result.output
        )
        without_secrets(result.output)
        assert not store.exists()
        assert target.store.last_position == before


# --- missing secrets, per cloud -----------------------------------------------------------


def test_aws_secret_that_does_not_exist(moto_endpoint, monkeypatch):  # noqa: F811
    from handlers.aws import secrets

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    secrets._cache.clear()
    boto3.client("secretsmanager").create_secret(Name="relay/target", SecretString=GOOD["target"])
    env = {"ESDB_RELAY_SOURCE_SECRET": "relay/missing", "ESDB_RELAY_TARGET_SECRET": "relay/target"}
    with pytest.raises(ConfigError) as raised:
        secrets.connection_settings(env)
    assert "source" in str(raised.value) and "does not exist" in str(raised.value)
    env["ESDB_RELAY_SOURCE_SECRET"] = "ssm:/relay/missing"
    with pytest.raises(ConfigError) as raised:
        secrets.connection_settings(env)
    assert "does not exist" in str(raised.value) and "ESDB_RELAY_SOURCE_SECRET" in str(raised.value)
    without_secrets(str(raised.value))


def test_gcp_and_azure_secret_not_delivered(monkeypatch):
    # Both platforms resolve secrets into env vars: a missing one is an unset variable (GCP) or
    # the reference text itself (an Azure Key Vault reference the app cannot resolve).
    from core.invocation import handle

    monkeypatch.setenv("ESDB_RELAY_JOB_ID", "cloud-job")
    monkeypatch.setenv("ESDB_RELAY_TARGET", GOOD["target"])
    missing = handle({}, remaining_seconds=10, chain=pytest.fail)
    assert missing["status"] == "failed" and "ESDB_RELAY_SOURCE" in missing["error"]
    monkeypatch.setenv(
        "ESDB_RELAY_SOURCE", "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/s)"
    )
    unresolved = handle({}, remaining_seconds=10, chain=pytest.fail)
    assert "unresolved secret reference" in unresolved["error"]
    without_secrets(json.dumps([missing, unresolved]))


def test_connection_options_checked_when_the_job_loads(tmp_path: Path):
    # esdbclient refuses these only when it connects; the job refuses them up front.
    for option in ("nodePreference=nearest", "maxDiscoverAttempts=x", "tls=yes", "tlsCa=/ca"):
        with pytest.raises(ConfigError) as raised:
            JobConfig.from_payload({**GOOD, "source": f"{GOOD['source']}?{option}"})
        check(raised.value, "source", "invalid option")


@pytest.mark.parametrize(
    ("module", "url", "said"),
    [
        ("handlers.aws.checkpoint_store", "dynamodb://", "names no table"),
        ("handlers.gcp.checkpoint_store", "firestore://", "names no collection"),
        ("handlers.azure.checkpoint_store", "azuretable://no_such!", "not a valid Azure table"),
    ],
)
def test_cloud_store_urls_refused_before_any_call(module, url, said):
    # Each cloud validates its own URL when the store opens (the job accepts any known scheme).
    import importlib

    from core.checkpoint import open_store

    importlib.import_module(module).register()
    with pytest.raises(ConfigError, match=said) as raised:
        open_store(url)
    assert "use " in str(raised.value)


@pytest.mark.parametrize("args", [["--from", str(10**30)], ["--from", "0", "--to", str(2**63)]])
def test_backfill_positions_beyond_64_bits_are_refused(tmp_path, monkeypatch, args):
    # They used to reach protobuf and end in a ValueError traceback.
    monkeypatch.chdir(tmp_path)
    for key, value in GOOD.items():
        monkeypatch.setenv(f"ESDB_RELAY_{key.upper()}", value)
    result = CliRunner().invoke(app, ["backfill", *args, "--dry-run"])
    assert result.exit_code == 2, result.output
    assert "9223372036854775807" in result.output and result.exception.__class__ is SystemExit
    assert list(tmp_path.iterdir()) == []

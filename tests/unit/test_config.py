from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from core.config import BudgetConfig, ConnectionString, FilterConfig, JobConfig
from core.config_errors import format_validation_error
from core.connection import redact_connection_string
from core.errors import ConfigError, RelayError

PASSWORD = "Hunter2-Sup3rSecret"
SOURCE = f"esdb://admin:{PASSWORD}@source.internal:2113?tls=true"
TARGET = f"esdb+discover://admin:{PASSWORD}@abc.mesdb.eventstore.cloud:2113"


def minimal(**overrides: Any) -> dict[str, Any]:
    return {"job_id": "orders", "source": SOURCE, "target": TARGET, **overrides}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("ESDB_RELAY_"):
            monkeypatch.delenv(name)


def problems(payload: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        JobConfig.from_payload(payload)
    return info.value


def assert_problem(error: ConfigError, field: str, *fragments: str) -> str:
    lines = [p for p in error.problems if p.startswith(f"{field}: ")]
    assert lines, f"no problem reported for {field}: {error.problems}"
    line = lines[0]
    assert " — " in line, line  # what is wrong — how to fix
    for fragment in fragments:
        assert fragment in line, line
    assert PASSWORD not in str(error)
    return line


# --- loading ------------------------------------------------------------------------------


def test_payload_with_defaults() -> None:
    config = JobConfig.from_payload(minimal())
    assert config.job_id == "orders"
    assert config.source.get_secret_value() == SOURCE
    assert config.target.get_secret_value() == TARGET
    assert (config.mode, config.partitions) == ("ordered", 1)
    assert config.filters == FilterConfig()
    assert config.transform is None
    assert config.original_metadata is True
    assert config.budget == BudgetConfig(
        max_events=20_000,
        max_bytes=64 * 1024 * 1024,
        deadline_seconds=600,
        safety_margin_seconds=10,
    )
    assert (config.batch.max_events, config.batch.max_bytes) == (500, 1_000_000)
    assert config.batch.max_bytes < 1_048_576
    assert config.dead_letter is False
    assert config.lease_ttl_seconds == 900
    assert config.checkpoint_store == "sqlite:///esdb-relay.db"


def test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESDB_RELAY_JOB_ID", "from-env")
    monkeypatch.setenv("ESDB_RELAY_SOURCE", SOURCE)
    monkeypatch.setenv("esdb_relay_target", TARGET)
    monkeypatch.setenv("ESDB_RELAY_MODE", "partitioned")
    monkeypatch.setenv("ESDB_RELAY_PARTITIONS", "6")
    monkeypatch.setenv("ESDB_RELAY_BUDGET__MAX_EVENTS", "5000")
    monkeypatch.setenv("ESDB_RELAY_FILTERS__INCLUDE_STREAMS", '["^order-", "^invoice-"]')
    monkeypatch.setenv("ESDB_RELAY_DEAD_LETTER", "true")
    for config in (JobConfig.load(),):
        assert config.job_id == "from-env"
        assert config.target.get_secret_value() == TARGET
        assert (config.mode, config.partitions) == ("partitioned", 6)
        assert config.budget.max_events == 5000
        assert config.budget.deadline_seconds == 600
        assert config.filters.include_streams == ["^order-", "^invoice-"]
        assert config.dead_letter is True


TOML = f"""
job_id = "from-file"
source = "{SOURCE}"
target = "{TARGET}"
transform = "my_pkg.hooks:rename"
checkpoint_store = "sqlite:////var/lib/relay/relay.db"

[filters]
exclude_streams = ["^\\\\$", "-test$"]
exclude_event_types = ["^Debug"]
scavenge = true

[budget]
max_events = 1000
deadline_seconds = 30.5
"""

YAML = f"""
job_id: from-file
source: "{SOURCE}"
target: "{TARGET}"
transform: my_pkg.hooks:rename
checkpoint_store: sqlite:////var/lib/relay/relay.db
filters:
  exclude_streams: ['^\\$', '-test$']
  exclude_event_types: ['^Debug']
  scavenge: true
budget:
  max_events: 1000
  deadline_seconds: 30.5
"""


@pytest.mark.parametrize(("name", "text"), [("job.toml", TOML), ("job.yaml", YAML)])
def test_file(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    config = JobConfig.load(file=path)
    assert config.job_id == "from-file"
    assert config.source.get_secret_value() == SOURCE
    assert config.transform == "my_pkg.hooks:rename"
    assert config.checkpoint_store == "sqlite:////var/lib/relay/relay.db"
    assert config.filters.exclude_streams == ["^\\$", "-test$"]
    assert config.filters.scavenge is True
    assert config.budget.max_events == 1000
    assert config.budget.deadline_seconds == 30.5
    assert config.budget.max_bytes == 64 * 1024 * 1024  # untouched keys keep their defaults


def test_json_and_yml_files(tmp_path: Path) -> None:
    (tmp_path / "job.json").write_text(json.dumps(minimal(partitions=1)))
    (tmp_path / "job.yml").write_text(YAML)
    assert JobConfig.load(file=tmp_path / "job.json").job_id == "orders"
    assert JobConfig.load(file=str(tmp_path / "job.yml")).job_id == "from-file"


def test_precedence_payload_over_env_over_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "job.toml"
    path.write_text(TOML)
    monkeypatch.setenv("ESDB_RELAY_JOB_ID", "from-env")
    monkeypatch.setenv("ESDB_RELAY_BUDGET__MAX_EVENTS", "2222")
    monkeypatch.setenv("ESDB_RELAY_BUDGET__MAX_BYTES", "4096")
    monkeypatch.setenv("ESDB_RELAY_TARGET", "esdb://env-target:2113")

    env_over_file = JobConfig.load(file=path)
    assert env_over_file.job_id == "from-env"
    assert env_over_file.target.get_secret_value() == "esdb://env-target:2113"
    assert env_over_file.source.get_secret_value() == SOURCE  # only in the file
    # nested tables merge key by key across sources
    assert env_over_file.budget.max_events == 2222
    assert env_over_file.budget.max_bytes == 4096
    assert env_over_file.budget.deadline_seconds == 30.5

    payload = {"job_id": "from-payload", "budget": {"max_bytes": 8192}, "dead_letter": True}
    everything = JobConfig.load(file=path, payload=payload)
    assert everything.job_id == "from-payload"
    assert everything.budget.max_bytes == 8192
    assert everything.budget.max_events == 2222
    assert everything.budget.deadline_seconds == 30.5
    assert everything.dead_letter is True
    assert everything.filters.scavenge is True

    env_and_payload = JobConfig.load(payload={"job_id": "p", "source": SOURCE})
    assert env_and_payload.job_id == "p"
    assert env_and_payload.target.get_secret_value() == "esdb://env-target:2113"


def test_from_payload_ignores_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESDB_RELAY_JOB_ID", "from-env")
    monkeypatch.setenv("ESDB_RELAY_BUDGET__MAX_EVENTS", "not-a-number")
    assert JobConfig.from_payload(minimal()).job_id == "orders"


def test_config_is_frozen() -> None:
    config = JobConfig.from_payload(minimal())
    with pytest.raises(ValidationError):
        config.job_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "url",
    [
        "esdb://localhost:2113?tls=false",
        "esdb://admin:changeit@node1:2113,node2:2113,node3:2113?tls=true",
        "esdb+discover://admin:changeit@cluster.mesdb.eventstore.cloud",
        "kurrentdb://admin:changeit@[::1]:2113?tls=false",
        "kurrentdb+discover://cluster.example.com:2113",
        "ESDB://HOST",
    ],
)
def test_valid_connection_strings(url: str) -> None:
    assert JobConfig.from_payload(minimal(source=url)).source.get_secret_value() == url


# --- validation errors --------------------------------------------------------------------


def test_error_is_config_error_not_validation_error() -> None:
    error = problems(minimal(partitions="many"))
    assert isinstance(error, RelayError)
    assert not isinstance(error, ValidationError)
    assert error.field == "partitions"
    assert str(error).startswith("invalid job configuration:\n  partitions: ")
    assert "hint: " in str(error)


@pytest.mark.parametrize(
    ("payload", "field", "fragments"),
    [
        (minimal(partitions="many"), "partitions", ("integer", "whole number")),
        (minimal(budget={"deadline_seconds": "soon"}), "budget.deadline_seconds", ("number",)),
        (minimal(dead_letter="perhaps"), "dead_letter", ("true or false",)),
        (minimal(filters={"include_streams": "^a"}), "filters.include_streams", ("list",)),
        (minimal(mode="fast"), "mode", ("'ordered'", "'partitioned'")),
        (minimal(budget={"max_events": 0}), "budget.max_events", ("greater than", ">= 1")),
        (minimal(batch={"max_bytes": -1}), "batch.max_bytes", ("greater than",)),
        (minimal(lease_ttl_seconds=0), "lease_ttl_seconds", ("greater than",)),
        (minimal(colour="blue"), "colour", ("unknown setting", "job_id", "checkpoint_store")),
        (minimal(budget={"max_event": 5}), "budget.max_event", ("unknown", "max_events")),
        (
            minimal(filters={"exclude_stream_prefixes": [""]}),
            "filters.exclude_stream_prefixes[0]",
            (),
        ),
        ({"job_id": "x", "source": SOURCE}, "target", ("required", "ESDB_RELAY_TARGET")),
        (minimal(job_id="-starts-with-dash"), "job_id", ("job id", "letters, digits")),
        (minimal(job_id="has space"), "job_id", ("job id",)),
        (minimal(job_id="x" * 129), "job_id", ("1-128",)),
        (minimal(job_id=""), "job_id", ()),
        (minimal(partitions=4), "partitions", ("partitioned mode", "mode = 'partitioned'")),
        (minimal(mode="partitioned", partitions=257), "partitions", ("256",)),
        (minimal(mode="partitioned", partitions=0), "partitions", ()),
        (minimal(transform="mymodule"), "transform", ("module:function",)),
        (minimal(transform="my module:fn"), "transform", ("module:function",)),
        (minimal(transform="pkg.mod:"), "transform", ("module:function",)),
        (
            minimal(checkpoint_store="mongodb://x/y"),
            "checkpoint_store",
            ("'mongodb'", "sqlite://", "dynamodb://"),
        ),
        (minimal(checkpoint_store="relay.db"), "checkpoint_store", ("no scheme",)),
        (minimal(checkpoint_store="sqlite://host/relay.db"), "checkpoint_store", ("no host",)),
        (minimal(checkpoint_store="sqlite:///"), "checkpoint_store", ("no file",)),
        (minimal(checkpoint_store="sqlite:///x.db?cache=1"), "checkpoint_store", ("'cache'",)),
    ],
)
def test_validation_error_names_field_and_fix(
    payload: dict[str, Any], field: str, fragments: tuple[str, ...]
) -> None:
    assert_problem(problems(payload), field, *fragments)


def test_bad_regex_reported_by_field_index_and_error() -> None:
    error = problems(
        minimal(
            filters={
                "include_streams": ["^order-", "^(unclosed"],
                "exclude_event_types": ["ok", "fine", "*star"],
            }
        )
    )
    line = assert_problem(
        error, "filters.include_streams[1]", "invalid regular expression", "missing )"
    )
    assert "position" in line
    assert_problem(error, "filters.exclude_event_types[2]", "nothing to repeat")
    assert len(error.problems) == 2


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"http://admin:{PASSWORD}@host:2113", "unsupported scheme"),
        (f"tcp://admin:{PASSWORD}@host:1113", "unsupported scheme"),
        (f"admin:{PASSWORD}@host:2113", "no scheme"),
        (f"esdb://admin:{PASSWORD}@", "no host"),
        (f"esdb://admin:{PASSWORD}@:2113", "no host"),
        (f"esdb://admin:{PASSWORD}@?tls=false", "no host"),
        ("esdb://?tls=false", "no host"),
        (f"esdb://admin:{PASSWORD}@host1:2113,,host3:2113", "no host"),
        (f"esdb://admin:{PASSWORD}@host:port", "invalid port"),
        (f"esdb://admin:{PASSWORD}@host:99999", "invalid port"),
        ("   ", "empty"),
    ],
)
@pytest.mark.parametrize("field", ["source", "target"])
def test_bad_connection_string_named_without_echo(url: str, problem: str, field: str) -> None:
    error = problems(minimal(**{field: url}))
    line = assert_problem(error, field, problem, "esdb://", "kurrentdb+discover://")
    assert not url.strip() or url.strip() not in str(error)
    assert "host:port" not in line and "99999" not in line
    rendered = "".join(traceback.format_exception(error))
    assert PASSWORD not in rendered
    assert error.__cause__ is None and error.__suppress_context__


def test_several_problems_one_line_each() -> None:
    error = problems(
        {"job_id": "?", "source": "nope", "mode": "ordered", "partitions": 9, "extra": 1}
    )
    fields = [line.split(":", 1)[0] for line in error.problems]
    assert fields == ["job_id", "source", "target", "partitions", "extra"]
    assert str(error).count("\n  ") == 5


def test_env_error_names_variable_without_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESDB_RELAY_JOB_ID", "j")
    monkeypatch.setenv("ESDB_RELAY_SOURCE", SOURCE)
    monkeypatch.setenv("ESDB_RELAY_TARGET", f"ftp://admin:{PASSWORD}@x")
    with pytest.raises(ConfigError) as info:
        JobConfig.load()
    assert_problem(info.value, "target", "unsupported scheme")

    monkeypatch.setenv("ESDB_RELAY_TARGET", TARGET)
    monkeypatch.setenv("ESDB_RELAY_FILTERS__INCLUDE_STREAMS", f"[{PASSWORD}")
    with pytest.raises(ConfigError) as info:
        JobConfig.load()
    assert "filters" in str(info.value) and "JSON" in str(info.value)
    assert PASSWORD not in str(info.value)


def test_payload_must_be_an_object() -> None:
    with pytest.raises(ConfigError, match="payload must be an object"):
        JobConfig.from_payload(["job_id", "orders"])  # type: ignore[arg-type]


def test_payload_cannot_steer_settings_loading(tmp_path: Path) -> None:
    # BaseSettings treats `_env_file` & co. as loader options: a payload must not reach them.
    secret = tmp_path / "leak.env"
    secret.write_text("ESDB_RELAY_JOB_ID=from-dotenv\n")
    error = problems(minimal(_env_file=str(secret)))
    assert_problem(error, "_env_file", "unknown setting")


# --- files --------------------------------------------------------------------------------


def file_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        JobConfig.load(file=path)
    assert str(path) in str(info.value)
    rendered = "".join(traceback.format_exception(info.value))
    assert PASSWORD[:7] not in rendered  # parsers quote lines, sometimes truncated
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    assert "does not exist" in str(file_error(tmp_path / "nope.toml"))


def test_unreadable_file_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    assert "cannot be read" in str(file_error(tmp_path / "dir.yaml"))


def test_unsupported_file_type(tmp_path: Path) -> None:
    (tmp_path / "job.ini").write_text("[job]\n")
    assert ".toml" in str(file_error(tmp_path / "job.ini"))


def test_unparseable_toml(tmp_path: Path) -> None:
    path = tmp_path / "job.toml"
    path.write_text(f'job_id = "j"\nsource = "{SOURCE}\ntarget = 1\n')
    error = file_error(path)
    assert "not valid TOML" in str(error) and "line 2" in str(error)


def test_unparseable_yaml_does_not_quote_the_line(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(f'job_id: j\nsource: "{SOURCE}\ntarget: [\n')
    error = file_error(path)
    assert "not valid YAML" in str(error) and "line" in str(error)


def test_unparseable_json(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text(f'{{"source": "{SOURCE}",}}')
    assert "not valid JSON" in str(file_error(path))


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_bytes(b"job_id: \xff\xfe\n")
    assert "UTF-8" in str(file_error(path))


def test_file_must_hold_a_table(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("- a\n- b\n")
    assert "table of settings" in str(file_error(path))


def test_empty_file_reports_missing_fields(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("")
    with pytest.raises(ConfigError) as info:
        JobConfig.load(file=path)
    assert_problem(info.value, "job_id", "required")


def test_validation_errors_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "job.toml"
    path.write_text(TOML + '\n[batch]\nmax_events = "lots"\n')
    with pytest.raises(ConfigError) as info:
        JobConfig.load(file=path)
    assert_problem(info.value, "batch.max_events", "whole number")


# --- secrets ------------------------------------------------------------------------------


def test_secrets_never_rendered() -> None:
    config = JobConfig.from_payload(minimal())
    renderings = [
        repr(config),
        str(config),
        f"{config}",
        f"{config!r}",
        config.model_dump_json(),
        json.dumps(config.model_dump(mode="json")),
        repr(config.model_dump()),
        repr(config.source),
        str(config.target),
    ]
    for text in renderings:
        assert PASSWORD not in text
        assert "source.internal" not in text  # the whole string is hidden, not only the password


def test_direct_construction_hides_input_too() -> None:
    # Code that builds JobConfig(...) itself gets pydantic's own error: it must not leak either.
    with pytest.raises(ValidationError) as info:
        JobConfig(job_id="j", source=f"http://admin:{PASSWORD}@host", target=TARGET)
    assert "source" in str(info.value)
    assert PASSWORD not in str(info.value)


def test_format_validation_error_never_includes_input() -> None:
    class Probe(BaseModel):
        source: ConnectionString

    with pytest.raises(ValidationError) as info:
        Probe(source=f"http://admin:{PASSWORD}@host")
    assert PASSWORD in str(info.value)  # a raw pydantic error would leak it...
    text = format_validation_error(info.value, Probe)
    assert PASSWORD not in text  # ...the formatted one does not
    assert text.startswith("source: the connection string has an unsupported scheme — ")


def test_format_validation_error_for_nested_models() -> None:
    with pytest.raises(ValidationError) as info:
        FilterConfig.model_validate({"include_streams": ["a", "("], "nope": 1})
    lines = format_validation_error(info.value, FilterConfig).splitlines()
    assert lines[0].startswith("include_streams[1]: invalid regular expression")
    assert lines[1].startswith("nope: unknown setting — remove it")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (
            "esdb://admin:changeit@localhost:2113?tls=false",
            "esdb://admin:***@localhost:2113?tls=false",
        ),
        (
            "esdb+discover://ops:p%40ss@a:2113,b:2113/?tls=true",
            "esdb+discover://ops:***@a:2113,b:2113/?tls=true",
        ),
        ("kurrentdb://u:p@ss@host", "kurrentdb://u:***@host"),
        ("esdb://u:p?ss@host:2113?tls=true", "esdb://u:***@host:2113?tls=true"),
        ("esdb://admin@host:2113", "esdb://admin@host:2113"),
        ("esdb://host:2113?tls=false", "esdb://host:2113?tls=false"),
        ("not a url", "not a url"),
    ],
)
def test_redact_connection_string(raw: str, shown: str) -> None:
    assert redact_connection_string(raw) == shown


def test_redact_hides_the_test_password() -> None:
    assert PASSWORD not in redact_connection_string(SOURCE)
    assert redact_connection_string(SOURCE).startswith("esdb://admin:***@source.internal:2113")


# --- helpers ------------------------------------------------------------------------------


def test_filter_semantics() -> None:
    f = FilterConfig(
        include_streams=["^order-"],
        include_stream_prefixes=["invoice-"],
        exclude_streams=["-test$"],
        exclude_stream_prefixes=["order-legacy"],
        exclude_event_types=["^Debug"],
    )
    assert f.accepts("order-1", "Placed")
    assert f.accepts("invoice-9", "Issued")
    assert not f.accepts("customer-1", "Registered")  # not included
    assert not f.accepts("order-1-test", "Placed")  # excluded by regex
    assert not f.accepts("order-legacy-1", "Placed")  # excluded by prefix
    assert not f.accepts("order-1", "DebugDump")  # excluded type

    only_types = FilterConfig(include_event_types=["Placed$"])
    assert only_types.accepts("anything", "OrderPlaced")
    assert not only_types.accepts("anything", "OrderShipped")
    assert FilterConfig().accepts("$$metadata", "$metadata")


def test_effective_deadline() -> None:
    budget = BudgetConfig(deadline_seconds=600, safety_margin_seconds=10)
    assert budget.effective_deadline() == 600
    assert budget.effective_deadline(900_000) == 600
    assert budget.effective_deadline(300) == 290
    assert budget.effective_deadline(5) == 0

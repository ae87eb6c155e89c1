"""Invocation payloads fuzzed with hypothesis, through core.invocation and each cloud handler's
entry points, called in-process as the platforms call them.

Every payload either runs (against two TLS emulators with a password) or is refused with the
documented shape — `{"status": "failed", "next_action": "stop", "error": ...}`, HTTP 400 — and
a slice that fails raises RelayError (the platform retries). Nothing else may escape, no result
may hold the password, and no payload may name an endpoint or a credential.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import azure.functions as func
import pytest
from cloudevents.http import CloudEvent
from flask import Flask
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.errors import ConfigError, RelayError
from core.invocation import InvocationRequest, handle, parse_request
from esdb_emulator import Emulator
from tests.passwords import TEST_PASSWORDS

PASSWORD = TEST_PASSWORDS["tests/security password"]
ALLOWED = {"action", "job", "from", "to", "dry_run", "chained", "from_position", "to_position"}
ENDPOINT_KEYS = [
    "source",
    "target",
    "endpoint",
    "host",
    "url",
    "connection_string",
    "checkpoint_store",
    "ESDB_RELAY_SOURCE",
    "settings",
    "job_config",
]
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

HANDLER_FUZZ = settings(FUZZ, max_examples=20)  # each example calls several entry points

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
near_valid = st.fixed_dictionaries(
    {},
    optional={
        "action": st.sampled_from(["slice", "status", "preflight", "SLICE", "", "delete"])
        | json_values,
        "job": st.sampled_from(["fuzz-job", "other-job", ""]) | json_values,
        "from": st.integers(min_value=-5, max_value=2**70) | json_values,
        "to": st.integers(min_value=-5, max_value=2**70) | json_values,
        "dry_run": st.booleans() | json_values,
        "chained": st.booleans() | json_values,
    },
)
with_endpoint = st.builds(
    lambda base, key, value: {**base, key: value},
    near_valid,
    st.sampled_from(ENDPOINT_KEYS),
    st.sampled_from(["esdb+discover://evil.example:2113", "127.0.0.1:2113", "sqlite:////tmp/x.db"])
    | json_values,
)
payloads = json_values | near_valid | with_endpoint


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    users = {"admin": PASSWORD}
    with (
        Emulator(tls=True, users=users) as source,
        Emulator(tls=True, users=users) as target,
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv("ESDB_RELAY_JOB_ID", "fuzz-job")
        env.setenv("ESDB_RELAY_SOURCE", source.connection_string(password=PASSWORD))
        env.setenv("ESDB_RELAY_TARGET", target.connection_string(password=PASSWORD))
        db = tmp_path_factory.mktemp("fuzz") / "checkpoints.db"
        env.setenv("ESDB_RELAY_CHECKPOINT_STORE", f"sqlite:///{db}")
        env.setenv("ESDB_RELAY_FUNCTION_TIMEOUT", "30")
        yield source, target


def assert_documented(result: Any) -> dict[str, Any]:
    assert isinstance(result, dict), result
    assert result["status"] in ("ok", "busy", "failed")
    assert result["next_action"] in ("continue", "idle", "stop")
    if result["status"] == "failed":
        assert isinstance(result["error"], str) and result["error"]
        assert "Traceback" not in result["error"]
    assert PASSWORD not in json.dumps(result)
    return result


def run_or_relay_error(call):
    """The entry point's result; a RelayError (the platform retries) is documented too."""
    try:
        return call()
    except RelayError as e:
        assert PASSWORD not in str(e)
        return None


# --- core ---------------------------------------------------------------------------------


@FUZZ
@given(payloads)
def test_parse_request_refuses_with_a_config_error_or_accepts(payload):
    try:
        request = parse_request(payload)
    except ConfigError as e:
        assert str(e).strip() and e.hint
        return
    assert isinstance(request, InvocationRequest)
    assert isinstance(payload, dict | type(None)) or payload == ""
    assert set(payload or {}) <= ALLOWED


@FUZZ
@given(with_endpoint)
def test_a_payload_can_never_name_an_endpoint(payload):
    with pytest.raises(ConfigError) as raised:
        parse_request(payload)
    assert "unknown" in str(raised.value) or "invalid" in str(raised.value)
    # the relay's fields are not even part of the request model
    assert not set(InvocationRequest.model_fields) & {"source", "target", "checkpoint_store"}


@HANDLER_FUZZ
@given(payloads)
@example({"from": 10**30})  # found by this test: protobuf refused it with a bare ValueError
@example({"from": 2**63 - 1, "to": 2**63 - 1})
def test_handle(deployment, payload):
    chained: list[dict] = []
    result = run_or_relay_error(lambda: handle(payload, remaining_seconds=30, chain=chained.append))
    if result is not None:
        assert_documented(result)
    for request in chained:
        parse_request(request)  # what a slice enqueues is itself a valid payload


# --- the cloud entry points ---------------------------------------------------------------


class LambdaContext:
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:relay"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def aws_events(payload: Any) -> list[Any]:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return [
        payload,
        {"Records": [{"eventSource": "aws:sqs", "body": body}]},
        {"source": "aws.scheduler", "detail": payload},
        {"Records": payload},
    ]


@HANDLER_FUZZ
@given(payloads)
def test_aws_handler(deployment, monkeypatch, payload):
    from handlers.aws import lambda_function

    monkeypatch.setattr(lambda_function, "chain", lambda request, context: parse_request(request))
    for event in aws_events(payload):
        result = run_or_relay_error(lambda e=event: lambda_function.handler(e, LambdaContext()))
        if result is not None:
            assert result.get("status") in ("ok", "busy", "failed"), result
            assert PASSWORD not in json.dumps(result)


@HANDLER_FUZZ
@given(payloads, st.binary(max_size=40))
def test_gcp_entry_points(deployment, monkeypatch, payload, raw):
    import handlers.gcp.main as main

    monkeypatch.setattr(main, "publish", parse_request)
    app = Flask(__name__)
    for body in (json.dumps(payload).encode(), raw):
        with app.test_request_context("/", method="POST", data=body):
            from flask import request

            text, status, headers = main.on_http(request)
        assert headers["Content-Type"] == "application/json"
        result = json.loads(text)
        assert status in (200, 400, 500)
        assert (status == 200) == (result["status"] != "failed")
        assert PASSWORD not in text
    data = base64.b64encode(json.dumps(payload).encode()).decode()
    for event_data in ({"message": {"data": data}}, {"message": {"data": raw.hex()}}, payload):
        event = CloudEvent(
            {"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub"},
            event_data,
        )
        run_or_relay_error(lambda e=event: main.on_event(e))


@HANDLER_FUZZ
@given(payloads, st.binary(max_size=40))
def test_azure_entry_points(deployment, monkeypatch, payload, raw):
    from handlers.azure import function_app

    monkeypatch.setattr(function_app, "enqueue", parse_request)
    for body in (json.dumps(payload).encode(), raw):
        response = function_app.manual(func.HttpRequest("POST", "/api/invoke", body=body))
        assert response.status_code in (200, 400, 500)
        result = assert_documented(json.loads(response.get_body()))
        assert (response.status_code == 200) == (result["status"] != "failed")
        run_or_relay_error(lambda b=body: function_app.chained(func.QueueMessage(body=b)))

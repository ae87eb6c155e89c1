"""The Functions host's side of the host <-> Python worker protocol, for one unpacked app.

Run by tests/runtimes/test_azure_runtime.py with .venv-azure-worker's Python (not the relay's
venv): `python azure_worker_host.py APP_DIR`. It plays what the Functions host does over gRPC,
with the same protocol messages (FunctionRpc_pb2), and lets the worker's own code do the rest:

- WorkerInitRequest: the worker imports APP_DIR/function_app.py and indexes every function with
  its bindings (loader.index_function_app, functions.Registry.add_indexed_function, which runs
  validate_function_params: a parameter the decorators do not bind fails the whole app);
- FunctionsMetadataRequest / FunctionLoadRequest: the functions the host would register;
- InvocationRequest: a timer tick, a queue message or an HTTP request, converted by the worker's
  bindings (azure.functions converters) and run on its thread pool.

sys.path is what the worker sets up for a deployed app: the app folder and its
.python_packages/lib/site-packages first (the customer's dependencies win over the worker's,
as with PYTHON_ISOLATE_WORKER_DEPENDENCIES on Python >= 3.10), then the worker's own packages.

Protocol with the test: one JSON request per line on stdin, one JSON answer per line on stdout
prefixed with ANSWER (the function's own output goes to stderr; stray stdout lines are skipped).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import os
import sys
import sysconfig
import uuid
from pathlib import Path
from typing import Any

ANSWER = "@@host "

APP = Path(sys.argv[1]).resolve()
sys.path[:0] = [str(APP), str(APP / ".python_packages" / "lib" / "site-packages")]
os.chdir(APP)

# The protocol messages, from azure-functions-runtime-v1's tests/protos package, loaded under a
# name of their own (a top-level "tests" package would be ambiguous).
_PROTOS = Path(sysconfig.get_paths()["purelib"]) / "tests" / "protos"
_spec = importlib.util.spec_from_file_location(
    "host_protos", _PROTOS / "__init__.py", submodule_search_locations=[str(_PROTOS)]
)
assert _spec and _spec.loader, _PROTOS
_package = importlib.util.module_from_spec(_spec)
sys.modules["host_protos"] = _package
_spec.loader.exec_module(_package)
rpc: Any = importlib.import_module("host_protos.FunctionRpc_pb2")

from azure_functions_runtime import handle_event  # noqa: E402 - after sys.path is set


class Message:
    """What the worker's handlers receive: the streaming message and the host's properties."""

    def __init__(self, **fields: Any) -> None:
        self.request = rpc.StreamingMessage(**fields)
        self.properties = {"host": "127.0.0.1", "protos": rpc}


FUNCTION_IDS: dict[str, str] = {}
BINDINGS: dict[str, dict[str, str]] = {}  # function -> parameter -> binding type


def failure(result: Any) -> str | None:
    if result.status == rpc.StatusResult.Success:
        return None
    return result.exception.message or "failed"


async def init() -> dict[str, Any]:
    answer = await handle_event.worker_init_request(
        Message(
            worker_init_request=rpc.WorkerInitRequest(
                host_version="4.1040.0", function_app_directory=str(APP), capabilities={}
            )
        )
    )
    if error := failure(answer.result):
        return {"ok": False, "error": error, "functions": []}
    metadata = await handle_event.functions_metadata_request(Message())
    functions = []
    for fn in metadata.function_metadata_results or []:
        loaded = await handle_event.function_load_request(
            Message(function_load_request=rpc.FunctionLoadRequest(function_id=fn.function_id))
        )
        if error := failure(loaded.result):
            return {"ok": False, "error": error, "functions": []}
        FUNCTION_IDS[fn.name] = fn.function_id
        raw = [json.loads(b) for b in fn.raw_bindings]
        BINDINGS[fn.name] = {b["name"]: b["type"] for b in raw if b.get("direction") == "IN"}
        functions.append({"name": fn.name, "script_file": fn.script_file, "bindings": raw})
    return {"ok": True, "error": None, "functions": functions}


def typed(value: Any) -> Any:
    if isinstance(value, bytes):
        return rpc.TypedData(bytes=value)
    if isinstance(value, str):
        return rpc.TypedData(string=value)
    return rpc.TypedData(json=json.dumps(value))


def trigger_data(kind: str, data: Any) -> tuple[Any, dict[str, Any]]:
    """The TypedData and trigger metadata the host sends for one trigger."""
    if kind == "timerTrigger":
        tick = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": None, "IsPastDue": False}
        return rpc.TypedData(json=json.dumps(tick)), {}
    if kind == "queueTrigger":
        now = "2026-12-07T12:00:00+00:00"
        metadata = {
            "Id": typed(str(uuid.uuid4())),
            "DequeueCount": rpc.TypedData(json="1"),
            "InsertionTime": rpc.TypedData(json=json.dumps(now)),
            "ExpirationTime": rpc.TypedData(json=json.dumps(now)),
            "NextVisibleTime": rpc.TypedData(json=json.dumps(now)),
            "PopReceipt": typed("receipt"),
        }
        return typed(data), metadata
    if kind == "httpTrigger":
        body = data.encode() if isinstance(data, str) else json.dumps(data).encode()
        http = rpc.RpcHttp(
            method="POST",
            url="https://relay.azurewebsites.net/api/invoke",
            headers={"content-type": "application/json"},
            body=rpc.TypedData(bytes=body),
        )
        return rpc.TypedData(http=http), {}
    raise ValueError(f"no trigger {kind}")


async def invoke(function: str, data: Any) -> dict[str, Any]:
    (parameter, kind), *_ = BINDINGS[function].items()
    value, metadata = trigger_data(kind, data)
    answer = await handle_event.invocation_request(
        Message(
            invocation_request=rpc.InvocationRequest(
                invocation_id=str(uuid.uuid4()),
                function_id=FUNCTION_IDS[function],
                input_data=[rpc.ParameterBinding(name=parameter, data=value)],
                trigger_metadata=metadata,
            )
        )
    )
    result: dict[str, Any] = {"ok": failure(answer.result) is None, "error": failure(answer.result)}
    if answer.return_value.WhichOneof("data") == "http":
        http = answer.return_value.http
        result["status_code"] = int(http.status_code)
        body = http.body
        raw = body.bytes if body.WhichOneof("data") == "bytes" else body.string.encode()
        result["body"] = json.loads(raw) if raw else None
    return result


async def serve() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "init":
            answer = await init()
        else:
            answer = await invoke(request["function"], request.get("data"))
        sys.stdout.write(ANSWER + json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(serve())

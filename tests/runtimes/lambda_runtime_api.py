"""A local AWS Lambda Runtime API (2018-06-01), what the Lambda service serves to a runtime.

The runtime interface client (awslambdaric) polls `GET /2018-06-01/runtime/invocation/next`,
calls the handler with the event and a context built from the response headers (request id,
deadline, function ARN), and posts `/invocation/{id}/response` or `/invocation/{id}/error`; a
handler that cannot even be imported is reported at `/init/error`. `invoke()` queues one event
and waits for its outcome, as a synchronous Invoke would.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"


@dataclass
class Outcome:
    request_id: str
    ok: bool
    body: Any
    error_type: str | None = None


@dataclass
class RuntimeApi:
    function_arn: str
    timeout_seconds: float
    events: queue.Queue[tuple[str, bytes, float]] = field(default_factory=queue.Queue)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    init_error: dict[str, Any] | None = None
    changed: threading.Condition = field(default_factory=threading.Condition)
    server: ThreadingHTTPServer | None = None

    @property
    def address(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def __enter__(self) -> RuntimeApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(
                self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
            ):
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    return self._answer(404)
                request_id, body, deadline = api.events.get()
                self._answer(
                    200,
                    body,
                    {
                        "Content-Type": "application/json",
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": str(int(deadline * 1000)),
                        "Lambda-Runtime-Invoked-Function-Arn": api.function_arn,
                        "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-0",
                    },
                )

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                parts = self.path.removeprefix(PREFIX).strip("/").split("/")
                with api.changed:
                    if parts == ["init", "error"]:
                        api.init_error = body
                    elif len(parts) == 3 and parts[0] == "invocation" and parts[2] == "response":
                        api.outcomes[parts[1]] = Outcome(parts[1], True, body)
                    elif len(parts) == 3 and parts[0] == "invocation" and parts[2] == "error":
                        error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
                        api.outcomes[parts[1]] = Outcome(parts[1], False, body, error_type)
                    else:
                        return self._answer(404)
                    api.changed.notify_all()
                self._answer(202, b'{"status":"OK"}', {"Content-Type": "application/json"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    def invoke(self, event: Any, *, wait: float = 120.0) -> Outcome:
        """Queue one invocation (the deadline is now + the function's timeout) and wait for it."""
        request_id = str(uuid.uuid4())
        self.events.put(
            (request_id, json.dumps(event).encode(), time.time() + self.timeout_seconds)
        )
        end = time.monotonic() + wait
        with self.changed:
            while request_id not in self.outcomes:
                if self.init_error is not None:
                    raise AssertionError(
                        f"the runtime could not load the handler: {self.init_error}"
                    )
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no answer to invocation {request_id} within {wait:g} s")
                self.changed.wait(min(left, 0.5))
            return self.outcomes.pop(request_id)

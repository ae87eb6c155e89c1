"""A long read from a server slower than the reader lets messages gather before receiving
again (core/eventstore/internals.py `_messages`): every message still arrives, whole and in
order, short reads never pause, a read whose messages are already there does not pause for
them, and a cancel still ends a read at once. The server is a plain gRPC server in this
process whose one method sends numbered messages, with a pause between them when asked to
trickle."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from core.eventstore import internals

METHOD = "/test.Trickle/Read"


def _numbers(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    """The request is `count,gap_ms,wait_ms`: `count` numbered messages, `gap_ms` between
    each after the first 100, after `wait_ms` of silence (the client cancels meanwhile)."""
    count, gap_ms, wait_ms = (int(x) for x in request.decode().split(","))
    quiet = threading.Event()  # never set: a pause that is not time.sleep (counted below)
    if wait_ms:
        quiet.wait(wait_ms / 1000)
    for i in range(count):
        if gap_ms and i >= 100:
            quiet.wait(gap_ms / 1000)
        yield f"{i:08d}".encode() * 16


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    server = grpc.server(futures.ThreadPoolExecutor(4))
    handler = grpc.unary_stream_rpc_method_handler(_numbers)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.Trickle", {"Read": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    server.stop(None)


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The reading thread's pauses to let messages gather."""
    seen: list[float] = []
    real = time.sleep
    reader = threading.get_ident()

    def sleep(seconds: float) -> None:
        if threading.get_ident() == reader and seconds == internals.GATHER_SECONDS:
            seen.append(seconds)
        real(seconds)

    monkeypatch.setattr(internals.time, "sleep", sleep)
    return seen


def read(channel: grpc.Channel, count: int, gap_ms: int = 0, wait_ms: int = 0) -> list[bytes]:
    messages = internals.unary_stream_on_calling_thread(
        channel,
        METHOD,
        f"{count},{gap_ms},{wait_ms}".encode(),
        timeout=30,
        metadata=(),
        credentials=None,
    )
    return list(messages)


def numbered(count: int) -> list[bytes]:
    return [f"{i:08d}".encode() * 16 for i in range(count)]


def test_a_long_read_from_a_trickling_server_gathers_and_loses_nothing(channel, pauses):
    got = read(channel, 400, gap_ms=1)
    assert got == numbered(400)
    # 300 messages 1 ms apart: most receives wait, and each wait is followed by a pause in
    # which the next few messages gather (without gathering there would be no pauses).
    assert len(pauses) >= 10, len(pauses)
    assert len(pauses) < 300, "every message waited for: the pauses gathered nothing"


def test_a_short_read_never_pauses(channel, pauses):
    assert read(channel, internals.BULK_MESSAGES, gap_ms=0, wait_ms=50) == numbered(
        internals.BULK_MESSAGES
    )
    assert pauses == []


def test_a_read_whose_messages_are_there_never_pauses(channel, pauses):
    """All 400 messages (51 KiB: within HTTP/2's first window) are sent before the reader
    asks for the second: no receive waits for the server. (A receive may still take longer
    than the threshold now and then, a garbage collection or the scheduler within it: a
    rare pause costs nothing; one per message would.)"""
    messages = internals.unary_stream_on_calling_thread(
        channel, METHOD, b"400,0,0", timeout=30, metadata=(), credentials=None
    )
    first = next(iter(messages))
    time.sleep(0.5)  # the rest arrive meanwhile
    rest = list(messages)
    assert [first, *rest] == numbered(400)
    assert len(pauses) <= 3, f"{len(pauses)} pauses: a receive that found its message waited"


def test_a_cancel_ends_a_gathering_read_at_once(channel, pauses):
    messages = internals.unary_stream_on_calling_thread(
        channel, METHOD, b"100000,1,0", timeout=30, metadata=(), credentials=None
    )
    got = 0
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as raised:
        for _ in messages:
            got += 1
            if got == 300:
                threading.Timer(0.0, messages.cancel).start()
    assert raised.value.code() == grpc.StatusCode.CANCELLED  # type: ignore[attr-defined]
    assert time.monotonic() - started < 10
    assert pauses, "the read was cancelled while gathering"

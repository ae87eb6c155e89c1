"""Network partition: the target emulator runs in its own network namespace, reached over a
veth pair whose link is shaped by the kernel (tc tbf: a slow, queueing link), then cut — the
namespace's end of the link goes down, so packets vanish with no reset or refusal — for a few
seconds, then healed. The relay rides it out: 0 differences, 0 duplicates, 0 gaps.

`tc netem` (random loss, delay) is not used: this machine's kernel is built without it
(CONFIG_NET_SCH_NETEM is not set: `tc qdisc add dev X root netem loss 10%` answers "Error:
Specified qdisc kind is unknown.") and neither iptables nor nft is installed for a random-drop
rule. Needs root and iproute2; elsewhere the module is skipped, with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from esdb_emulator import Emulator, Store, snapshot
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import make_job
from tests.reliability.helpers import ROOT, Drive, check_replica, drive

PORT = 2113


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=30)


def namespaces_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (ip netns, tc)"
    if not (shutil.which("ip") and shutil.which("tc")):
        return "needs iproute2 (ip, tc)"
    probe = f"esdbprobe{os.getpid() % 100000}"
    made = sh("ip", "netns", "add", probe, check=False)
    if made.returncode:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    sh("ip", "netns", "del", probe, check=False)
    return None


pytestmark = pytest.mark.skipif(
    namespaces_unavailable() is not None, reason=namespaces_unavailable() or ""
)


class Link:
    """A namespace holding the target, joined to the host by a veth pair on a /30."""

    def __init__(self) -> None:
        n = os.getpid() % 250 + 1
        self.ns = f"esdbrel{os.getpid()}"
        self.host_if, self.ns_if = f"erh{os.getpid()}", f"ern{os.getpid()}"
        self.host_ip, self.ns_ip = f"10.213.{n}.1", f"10.213.{n}.2"

    def up(self) -> None:
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        sh("ip", "link", "set", self.ns_if, "netns", self.ns)
        sh("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        sh("ip", "link", "set", self.host_if, "up")
        self.run("ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
        self.run("ip", "link", "set", self.ns_if, "up")
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *args: str) -> None:
        sh("ip", "netns", "exec", self.ns, *args)

    def shape(self) -> None:
        """A slow link both ways: 1 Mbit/s with a queue of up to 200 ms."""
        for where in ((), ("ip", "netns", "exec", self.ns)):
            iface = self.host_if if not where else self.ns_if
            sh(*where, "tc", "qdisc", "add", "dev", iface, "root", "tbf", "rate", "1mbit",
               "burst", "16kbit", "latency", "200ms")  # fmt: skip

    def cut(self) -> None:
        self.run("ip", "link", "set", self.ns_if, "down")

    def heal(self) -> None:
        self.run("ip", "link", "set", self.ns_if, "up")

    def down(self) -> None:
        sh("ip", "link", "del", self.host_if, check=False)
        sh("ip", "netns", "del", self.ns, check=False)


@pytest.fixture
def link() -> Iterator[Link]:
    link = Link()
    try:
        link.up()
        yield link
    finally:
        link.down()


def start_target(link: Link, data: Path) -> subprocess.Popen[bytes]:
    """`esdb-relay emulator` inside the namespace; it saves its data to `data` when stopped."""
    command = [
        *("ip", "netns", "exec", link.ns),
        *(str(Path(sys.executable).with_name("esdb-relay")), "emulator"),
        *("--host", link.ns_ip, "--port", str(PORT), "--snapshot", str(data)),
    ]
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # "esdb emulator listening on ...", once it serves
        if "listening on" in line:
            return proc
    raise RuntimeError(f"the target emulator did not start in {link.ns}")


@pytest.mark.soak  # ~20 s: run by `make soak`
def test_relay_rides_out_a_partition_of_the_target(tmp_path, link):
    data = tmp_path / "target.gz"
    target = start_target(link, data)
    try:
        with Emulator() as source:
            generate(source.store, Workload(events=1200, streams=50, seed=13))
            job = make_job(
                source,
                _Address(f"esdb://{link.ns_ip}:{PORT}?Tls=false"),
                tmp_path,
                budget={"max_events": 300},
                batch={"max_events": 50},
                filters={"exclude_streams": ["^cart-"]},
            )
            link.shape()
            outcome: dict[str, Drive | BaseException] = {}

            def relay() -> None:
                try:
                    outcome["drive"] = drive(job, relay_timeout=3.0, max_slices=200)
                except BaseException as e:  # reported by the assertion below
                    outcome["error"] = e

            thread = threading.Thread(target=relay)
            thread.start()
            time.sleep(1.5)
            assert thread.is_alive(), "the relay finished before the partition"
            link.cut()
            time.sleep(6.0)  # twice the relay's 3 s call deadline
            assert thread.is_alive(), "the relay did not wait for the partition to heal"
            link.heal()
            thread.join(timeout=240)
            assert not thread.is_alive()
            assert "error" not in outcome, outcome.get("error")
            assert isinstance(outcome["drive"], Drive)
        target.send_signal(signal.SIGTERM)  # saves its data
        target.wait(timeout=30)
        replica = Store(seed_system_events=False)
        snapshot.load(replica, data)
        check = check_replica(source.store, replica, job.filters)
        assert check.events_checked > 600
        assert check.clean, check
    finally:
        if target.poll() is None:
            target.kill()
            target.wait()


class _Address:
    """Stands in for an Emulator where make_job only needs the connection string."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

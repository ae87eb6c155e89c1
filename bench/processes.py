"""Child processes of the benchmark: emulators, and the measured replicators.

Every replicator (ours and the baselines) runs in its own process, so its peak RSS and CPU time
are its own: CPU time from `os.wait4`, the kernel's accounting for exactly that child; peak RSS
from the child itself (`own_peak_rss_mib`), since the kernel's `ru_maxrss` of a forked child
starts at its parent's resident size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from bench.workloads import BenchWorkload

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The process id of each emulator `served_emulator` is serving, by its connection string, for
# measuring the emulators' own CPU (bench/emulator_cost.py).
SERVED_PIDS: dict[str, int] = {}


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _wait_ready(proc: subprocess.Popen[str], stdout: IO[str], timeout: float) -> int:
    guard = threading.Timer(timeout, proc.kill)
    guard.start()
    line = stdout.readline()  # blocks until the server prints `ready <port>` or exits
    guard.cancel()
    if not line.startswith("ready "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"emulator process did not start (said {line!r})")
    return int(line.split()[1])


@contextmanager
def served_emulator(
    workload: BenchWorkload | None = None,
    *,
    latency_ms: float = 0.0,
    latency_methods: Sequence[str] = (),
    multi_append: bool = True,
    server_version: str | None = None,
    start_timeout: float = 600.0,
) -> Iterator[str]:
    """An emulator in its own process; yields its connection string."""
    args = ["--latency-ms", str(latency_ms)]
    if workload is not None:
        args += ["--workload", workload.model_dump_json()]
    if latency_methods:
        args += ["--latency-methods", ",".join(latency_methods)]
    if not multi_append:
        args.append("--no-multi-append")
    if server_version:
        args += ["--server-version", server_version]
    proc = subprocess.Popen(
        python_module("bench.emulator_server", *args),
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    uri = ""
    try:
        port = _wait_ready(proc, proc.stdout, start_timeout)
        uri = f"esdb://127.0.0.1:{port}?Tls=false"
        SERVED_PIDS[uri] = proc.pid
        yield uri
    finally:
        SERVED_PIDS.pop(uri, None)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def own_peak_rss_mib() -> float:
    """This process's peak resident memory (Linux `VmHWM`, reset by exec). The kernel's
    `ru_maxrss` of a child is not: it starts at its parent's resident size when forked, so a
    large parent (the shards bench after sampling the source: ~180 MiB) showed in every child
    (~75 MiB each of their own)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


@dataclass(frozen=True)
class Measured:
    output: dict[str, Any]  # the JSON object the child printed last
    peak_rss_mib: float
    cpu_seconds: float

    @property
    def running_cpu_per_million(self) -> float:
        """Of a child that reports `events` and `startup_cpu_seconds` (bench/relay_runner.py)."""
        return running_cpu_per_million(
            self.cpu_seconds,
            float(self.output.get("startup_cpu_seconds", 0.0)),
            int(self.output["events"]),
        )


def running_cpu_per_million(cpu_seconds: float, startup_cpu_seconds: float, events: int) -> float:
    """CPU seconds per million events after the process's start-up (imports: fixed, which a
    short run spreads over few events): the per-event cost a long job pays."""
    return (cpu_seconds - startup_cpu_seconds) / events * 1e6 if events else float("nan")


def run_measured(argv: list[str], timeout: float) -> Measured:
    """Run `argv`, which prints one JSON object as its last stdout line; measure its peak RSS
    and CPU seconds (user + system) from the kernel's accounting for that one child."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    watchdog = threading.Timer(timeout, proc.kill)  # children bound themselves; this is a guard
    watchdog.start()
    try:
        out = proc.stdout.read()
    except BaseException:  # interrupted: leave no replicator running
        proc.kill()
        raise
    finally:
        proc.stdout.close()
    # communicate() would reap the child and lose its rusage: read stdout, then wait4 it.
    _, status, usage = os.wait4(proc.pid, 0)
    watchdog.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[2:4])} failed with exit code {proc.returncode}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{' '.join(argv[2:4])} printed no result")
    result = json.loads(lines[-1])
    return Measured(
        output=result,
        # the child's own when it reports it; ru_maxrss (KiB) counts the parent's at fork
        peak_rss_mib=float(result.get("peak_rss_mib", usage.ru_maxrss / 1024)),
        cpu_seconds=usage.ru_utime + usage.ru_stime,
    )

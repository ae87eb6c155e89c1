"""preflight's report: one check per line, ok, warn, fail, skip or unknown, with the fix."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, computed_field

CheckStatus = Literal["ok", "warn", "fail", "skip", "unknown"]


Cloud = Literal["aws", "gcp", "azure"]


CLOUDS: tuple[str, ...] = ("aws", "gcp", "azure")


NetworkMode = Literal["peered", "public"]


NETWORK_MODES: tuple[str, ...] = ("peered", "public")


TCP_CONNECTS = 3  # connects timed per host; the median is reported


GRPC_CALLS = 5  # round trips timed per endpoint; the median is reported


SLOW_ROUND_TRIP_MS = 100.0  # above this a slice spends most of its time waiting


CERT_WARN_DAYS = 14


PROBE_STREAM = "esdb-relay-preflight"  # the target write probe names it; nothing is written


class Check(BaseModel):
    name: str
    status: CheckStatus
    detail: str
    fix: str | None = None
    figures: dict[str, float] = Field(default_factory=dict)


class PreflightReport(BaseModel):
    job_id: str
    source: str = Field(description="the source connection string, password redacted")
    target: str = Field(description="the target connection string, password redacted")
    checks: list[Check]
    finished_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failures(self) -> int:
        return sum(1 for c in self.checks if c.status == "fail")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def warnings(self) -> int:
        return sum(1 for c in self.checks if c.status == "warn")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return self.failures == 0

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def summary(self) -> str:
        failed = [c.name for c in self.checks if c.status == "fail"]
        if failed:
            return f"{len(failed)} check(s) failed: " + ", ".join(failed)
        return f"all checks passed ({self.warnings} warning(s))"


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

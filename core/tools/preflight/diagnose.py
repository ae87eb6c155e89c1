"""Why a connection failed, in preflight's words: a command that could not reach a side (`run`,
`backfill`, `status`) probes that side as preflight does and names the first check that fails
(DNS, TCP, TLS: plaintext against TLS, an unknown CA; credentials), with its fix."""

from __future__ import annotations

from typing import Literal

from core.config import JobConfig
from core.errors import ConfigError, RelayError
from core.tools.preflight.probe import EndpointProbe
from core.tools.preflight.report import Check

Side = Literal["source", "target"]


def side_of(error: RelayError) -> Side | None:
    """The side an error of core.eventstore names first ("source: ..." / "target: ...")."""
    head = error.message.split(":", 1)[0].strip()
    return head if head in ("source", "target") else None  # type: ignore[return-value]


def connection_failure(error: RelayError) -> bool:
    """An error worth a diagnosis: a side could not be reached or refused us (not a conflict
    in the data, not the configuration)."""
    return side_of(error) is not None and not isinstance(error, ConfigError)


def diagnose(job: JobConfig, side: Side, timeout: float = 5.0) -> Check | None:
    """The first failing check of preflight's probe of `side`, or None when every check of
    that side passes (the failure was then transient, or lies beyond what preflight sees)."""
    secret = job.source if side == "source" else job.target
    probe = EndpointProbe(side, secret.get_secret_value(), timeout)
    try:
        probe.run()
    except Exception:  # a diagnosis that fails is no diagnosis; the first error stands
        return None
    return next((c for c in probe.checks if c.status == "fail"), None)

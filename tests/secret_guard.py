"""pytest plugin: the run fails if a test password appears in anything the suite captured.

It looks at every test report's captured stdout, stderr and log sections and its failure text
(longrepr), at every log record any logger emits while the suite runs (before any formatter
scrubs it), at the output of subprocesses collected with ``Popen.communicate`` (so also
``subprocess.run(capture_output=True)``), and at the output of typer/click's ``CliRunner``.
A leak is reported by the password's label and where it was seen, never by its value.

Loaded by tests/conftest.py; a sub-run loads it with ``-p tests.secret_guard``.
``ESDB_RELAY_TEST_PASSWORDS`` (a JSON object label -> password) adds passwords for a run.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.passwords import TEST_PASSWORDS

EXTRA_PASSWORDS_ENV = "ESDB_RELAY_TEST_PASSWORDS"


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""


class SecretGuard:
    def __init__(self, passwords: dict[str, str]) -> None:
        self.passwords = {label: value for label, value in passwords.items() if value}
        self.leaks: list[str] = []
        self.current = "(collection)"
        self._undo: list[Callable[[], None]] = []

    def check(self, text: str, where: str) -> None:
        for label, password in self.passwords.items():
            if password in text:
                self.leaks.append(f"test password {label!r} in {where}")

    # --- what pytest captured --------------------------------------------------------------

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        self.current = item.nodeid
        yield
        self.current = "(between tests)"

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for title, content in report.sections:
            self.check(content, f"{report.nodeid} ({report.when}): {title}")
        if report.longrepr is not None:
            self.check(report.longreprtext, f"{report.nodeid} ({report.when}): failure text")

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.longrepr is not None:
            self.check(report.longreprtext, f"{report.nodeid}: collection error")

    # --- what pytest does not capture -------------------------------------------------------

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._patch(logging.Logger, "callHandlers", self._logged)
        self._patch(subprocess.Popen, "communicate", self._communicated)
        try:
            from click.testing import CliRunner
        except ImportError:  # pragma: no cover - click comes with typer
            return
        self._patch(CliRunner, "invoke", self._cli_invoked)

    def _patch(self, owner: type, name: str, wrap: Callable[..., Any]) -> None:
        original = getattr(owner, name)

        def patched(*args: Any, **kwargs: Any) -> Any:
            return wrap(original, *args, **kwargs)

        setattr(owner, name, patched)
        self._undo.append(lambda: setattr(owner, name, original))

    def _logged(self, original: Callable[..., Any], logger: Any, record: Any) -> Any:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's problem
            message = str(record.msg)
        extras = " ".join(
            str(v) for k, v in vars(record).items() if k not in _STANDARD and isinstance(v, str)
        )
        error = str(record.exc_info[1]) if record.exc_info and record.exc_info[1] else ""
        self.check(f"{message} {extras} {error}", f"{self.current}: log {record.name}")
        return original(logger, record)

    def _communicated(self, original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        out, err = original(*args, **kwargs)
        self.check(_text(out) + _text(err), f"{self.current}: subprocess output")
        return out, err

    def _cli_invoked(self, original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        text = _text(result.stdout_bytes) + _text(result.stderr_bytes or b"")
        self.check(text, f"{self.current}: CLI output")
        return result

    # --- the verdict ------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        if self.leaks and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.leaks:
            return
        terminalreporter.section("test passwords leaked", sep="=", red=True, bold=True)
        for leak in dict.fromkeys(self.leaks):  # unique, in order
            terminalreporter.line(leak, red=True)
        terminalreporter.line(
            "a secret reached output a user could see: redact it (core.logs.scrub, SecretStr, "
            "core.config.redact_connection_string) where it is printed, logged or raised"
        )


_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def passwords() -> dict[str, str]:
    found = dict(TEST_PASSWORDS)
    extra = os.environ.get(EXTRA_PASSWORDS_ENV)
    if extra:
        found.update(json.loads(extra))
    return found


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("secret_guard_instance"):
        config.pluginmanager.register(SecretGuard(passwords()), "secret_guard_instance")

"""The secret guard (tests/secret_guard.py) fails a run whose output holds a test password, and
tests/passwords.py lists every password literal the suite uses."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tests.passwords import TEST_PASSWORDS, UNGUARDED
from tests.secret_guard import EXTRA_PASSWORDS_ENV

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
INNER = "inner-Only-Pa55-7731"  # known to the sub-run only, so this run's guard ignores it

LEAKY = f"""
import logging, subprocess, sys
SECRET = {INNER!r}

def test_prints_it():
    print("connecting with", SECRET)

def test_logs_it():
    logging.getLogger("some.library").warning("dsn=%s", SECRET)

def test_a_subprocess_prints_it():
    out = subprocess.run([sys.executable, "-c", "print(" + repr(SECRET) + ")"],
                         capture_output=True, text=True).stdout
    assert out

def test_clean():
    print("nothing to see")
"""


def sub_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, source: str):
    monkeypatch.setenv(EXTRA_PASSWORDS_ENV, json.dumps({"inner password": INNER}))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(test_inner=source)
    return pytester.runpytest_subprocess("-p", "tests.secret_guard", "-p", "no:cacheprovider")


def test_a_leak_fails_an_otherwise_green_run(pytester, monkeypatch):
    result = sub_run(pytester, monkeypatch, LEAKY)
    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    report = result.stdout.str()
    assert "test passwords leaked" in report
    for test, where in [
        ("test_prints_it", "Captured stdout call"),
        ("test_logs_it", "log some.library"),
        ("test_a_subprocess_prints_it", "subprocess output"),
    ]:
        assert re.search(rf"'inner password' in \S*::{test}\b.*{where}", report), (test, report)
    assert "test_clean" not in report.split("test passwords leaked")[1]
    assert INNER not in report, "the leak report must not print the password it found"
    # (the guard's silence on a clean run is this very suite passing with it loaded)


_LITERALS = [
    re.compile(r"[a-z+]+://[A-Za-z0-9_.-]+:([^@/\s\"'{}*]+)@"),  # scheme://user:PASSWORD@
    re.compile(r"\b(?:PASSWORD|SECRET|WRONG)\w* = \"([^\"]+)\""),  # PASSWORD = "..."
    re.compile(r"\bpassword=\"([^\"]+)\""),  # connection_string(password="...")
]


def test_every_password_literal_in_the_suite_is_guarded():
    guarded = set(TEST_PASSWORDS.values()) | UNGUARDED
    found: dict[str, str] = {}
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for pattern in _LITERALS:
            for match in pattern.finditer(path.read_text(encoding="utf-8")):
                found.setdefault(match.group(1), str(path.relative_to(ROOT)))
    assert found, "the scan found no literals: its patterns are broken"
    missing = {value: where for value, where in found.items() if value not in guarded}
    assert not missing, f"add these to tests/passwords.py (TEST_PASSWORDS or UNGUARDED): {missing}"


def test_the_guarded_passwords_are_distinctive():
    # A guarded value must not be an everyday word of our own messages, or the guard cries wolf.
    for value in TEST_PASSWORDS.values():
        assert len(value) >= 6 and value.lower() not in {"password", "secret", "changeme"}
    assert sys.version_info >= (3, 11)

"""Run checkov offline on one template folder, from its own virtualenv (`make checkov-env`).

checkov pins packages and ships an HCL parser that clobbers python-hcl2's, so it never shares
the test virtualenv: the tests call its executable and read its JSON report.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


@dataclass(frozen=True)
class Check:
    check_id: str
    resource: str
    file: str
    reason: str | None  # the suppression comment's reason, for skipped checks


@dataclass(frozen=True)
class Report:
    passed: list[Check]
    failed: list[Check]
    skipped: list[Check]


def run_checkov(directory: Path, framework: str, timeout: float = 600) -> Report:
    """checkov's verdict on `directory` for one framework (terraform, cloudformation, bicep ...).

    Fails the calling test when checkov is missing, did not run, or could not parse a file.
    """
    if not CHECKOV.exists():
        pytest.fail(f"checkov is not installed at {CHECKOV}: run `make checkov-env`")
    args = ["-d", str(directory), "--framework", framework, "--skip-download", "--compact"]
    proc = subprocess.run(
        [str(CHECKOV), *args, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    try:
        data: Any = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"checkov exited {proc.returncode}, no JSON report:\n{proc.stderr[-3000:]}")
    # A check that crashed on a resource (e.g. on a construct checkov cannot render) is neither
    # passed nor failed: zero failures would then hide it.
    crashed = sorted(set(re.findall(r"Failed to run check (\S+ on \S+)", proc.stderr)))
    if crashed:
        pytest.fail("checkov could not run: " + "; ".join(crashed))
    reports = [r for r in (data if isinstance(data, list) else [data]) if "results" in r]
    if not reports:
        pytest.fail(f"checkov found no {framework} resources in {directory}")
    checks: dict[str, list[Check]] = {"passed": [], "failed": [], "skipped": []}
    for report in reports:
        errors = report["summary"].get("parsing_errors", 0)
        if errors:
            pytest.fail(f"checkov could not parse {errors} file(s) in {directory}: {report}")
        for kind, found in checks.items():
            for c in report["results"].get(f"{kind}_checks", []):
                reason = (c.get("check_result") or {}).get("suppress_comment")
                found.append(Check(c["check_id"], c["resource"], c["file_path"], reason))
    return Report(**checks)

"""`make audit`: pip-audit over the project's resolved dependencies and each cloud's package.

The sets audited: every distribution installed in .venv (the tested set, which `esdb-relay
package` pins the cloud zips to), and for aws, gcp and azure the closure of that cloud's runtime
requirements (handlers/cli/packaging.py: base dependencies minus the CLI's, plus the cloud extra)
within .venv. pip-audit runs from its own virtualenv (.venv-audit) against PyPI's JSON API.

Policy (docs/reliability.md, "Security"): a known vulnerability fails the audit unless
`.pip-audit-ignore.toml` lists it with a reason and an expiry date that has not passed; an
expired entry or one without a reason fails too. A dependency the index cannot give data for is
reported as unaudited; `--strict` (or AUDIT_STRICT=1) makes that fail as well.

    .venv/bin/python -m tests.security.dependency_audit [--strict] [--json REPORT]
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PIP_AUDIT = ROOT / ".venv-audit" / "bin" / "pip-audit"
IGNORE_FILE = ROOT / ".pip-audit-ignore.toml"
CLOUDS = ("aws", "gcp", "azure")
PYPI = "https://pypi.org/pypi"
# The project itself, and the virtualenv's own installers (never imported, never packaged).
NOT_DEPENDENCIES = {"esdb-relay", "pip", "setuptools", "wheel", "uv"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- what is audited ------------------------------------------------------------------------


def installed() -> dict[str, str]:
    """name -> version of every distribution in the running environment (.venv)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and normalize(name) not in NOT_DEPENDENCIES:
            found.setdefault(normalize(name), dist.version)
    return found


def closure(requirements: list[str], versions: dict[str, str]) -> dict[str, str]:
    """The requirements and everything they depend on, as installed (extras followed)."""
    from packaging.requirements import Requirement

    todo = [Requirement(r) for r in requirements]
    seen: dict[str, str] = {}
    while todo:
        req = todo.pop()
        name = normalize(req.name)
        if name in seen or name not in versions:
            continue
        seen[name] = versions[name]
        for text in metadata.requires(req.name) or []:
            dep = Requirement(text)
            env = {"extra": ""}
            if dep.marker is not None and not any(
                dep.marker.evaluate({**env, "extra": extra}) for extra in [*req.extras, ""]
            ):
                continue
            todo.append(dep)
    return seen


def audited_sets() -> dict[str, dict[str, str]]:
    from handlers.cli.packaging import runtime_requirements

    versions = installed()
    sets = {"project (.venv)": versions}
    for cloud in CLOUDS:
        sets[f"{cloud} package"] = closure(runtime_requirements(ROOT, cloud), versions)
    return sets


# --- pip-audit ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    package: str
    version: str
    id: str
    aliases: tuple[str, ...]
    fix_versions: tuple[str, ...]

    def ids(self) -> set[str]:
        return {self.id, *self.aliases}


@dataclass
class AuditResult:
    findings: list[Finding] = field(default_factory=list)
    unaudited: dict[str, str] = field(default_factory=dict)  # package -> why


def run_pip_audit(pins: dict[str, str], timeout: float = 900) -> dict[str, Any]:
    if not PIP_AUDIT.exists():
        sys.exit(f"{PIP_AUDIT} is missing: run `make audit-env` first")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
    try:
        done = subprocess.run(
            [
                *(str(PIP_AUDIT), "-r", handle.name, "--no-deps", "--disable-pip"),
                *("--format", "json", "--progress-spinner", "off"),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        os.unlink(handle.name)
    if done.returncode not in (0, 1) or not done.stdout.strip():
        sys.exit(f"pip-audit failed (exit {done.returncode}):\n{done.stderr.strip()}")
    return json.loads(done.stdout)


def parse_report(report: dict[str, Any]) -> AuditResult:
    result = AuditResult()
    for dep in report.get("dependencies", []):
        name = normalize(dep["name"])
        if "skip_reason" in dep:
            result.unaudited[name] = dep["skip_reason"]
            continue
        for vuln in dep.get("vulns", []):
            result.findings.append(
                Finding(
                    name,
                    dep["version"],
                    vuln["id"],
                    tuple(vuln.get("aliases", [])),
                    tuple(vuln.get("fix_versions", [])),
                )
            )
    return result


def fill_from_project_pages(result: AuditResult, pins: dict[str, str]) -> int:
    """For dependencies pip-audit could not audit (an index that serves no per-version JSON),
    PyPI's project page still lists the vulnerabilities of the latest release: use it when the
    pinned version is that release. Returns how many were audited this way."""
    from concurrent.futures import ThreadPoolExecutor

    def page(name: str) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{PYPI}/{name}/json", timeout=30) as response:
                return json.load(response)
        except (OSError, ValueError):
            return None

    names = sorted(result.unaudited)
    with ThreadPoolExecutor(max_workers=8) as pool:
        pages = dict(zip(names, pool.map(page, names), strict=True))
    filled = 0
    for name, data in pages.items():
        if not data or data.get("info", {}).get("version") != pins.get(name):
            continue
        del result.unaudited[name]
        filled += 1
        for vuln in data.get("vulnerabilities") or []:
            result.findings.append(
                Finding(
                    name,
                    pins[name],
                    vuln["id"],
                    tuple(vuln.get("aliases") or []),
                    tuple(vuln.get("fixed_in") or []),
                )
            )
    return filled


# --- the policy -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Ignore:
    id: str
    package: str
    reason: str
    expires: date


def load_ignores(path: Path = IGNORE_FILE) -> tuple[list[Ignore], list[str]]:
    """The accepted findings, and a problem line for each entry that breaks the policy."""
    if not path.exists():
        return [], []
    entries = tomllib.loads(path.read_text()).get("ignore", [])
    ignores, problems = [], []
    for n, entry in enumerate(entries, 1):
        where = f"{path.name} entry {n} ({entry.get('id', 'no id')})"
        reason = str(entry.get("reason", "")).strip()
        expires = entry.get("expires")
        if not entry.get("id") or not entry.get("package"):
            problems.append(f"{where}: needs id and package")
        elif not reason:
            problems.append(f"{where}: needs a reason")
        elif not isinstance(expires, date):
            problems.append(f"{where}: needs expires = YYYY-MM-DD")
        else:
            ignores.append(Ignore(entry["id"], normalize(entry["package"]), reason, expires))
    return ignores, problems


def verdict(
    result: AuditResult, ignores: list[Ignore], today: date, *, strict: bool
) -> tuple[list[str], list[str]]:
    """(failures, notes): each a line for the report; the audit passes without failures."""
    failures, notes = [], []
    used: set[int] = set()
    for finding in result.findings:
        match = next(
            (
                i
                for i, ig in enumerate(ignores)
                if ig.package == finding.package and ig.id in finding.ids()
            ),
            None,
        )
        line = f"{finding.package} {finding.version}: {finding.id}" + (
            f" (fixed in {', '.join(finding.fix_versions)})" if finding.fix_versions else ""
        )
        if match is None:
            failures.append(f"{line} — upgrade, or accept it in {IGNORE_FILE.name}")
            continue
        used.add(match)
        ignore = ignores[match]
        if ignore.expires < today:
            failures.append(f"{line} — its acceptance expired on {ignore.expires}: review it")
        else:
            notes.append(f"{line} accepted until {ignore.expires}: {ignore.reason}")
    for i, ignore in enumerate(ignores):
        if i not in used:
            notes.append(f"{IGNORE_FILE.name}: {ignore.id} ({ignore.package}) matches nothing now")
    if result.unaudited:
        names = ", ".join(sorted(result.unaudited))
        line = (
            f"{len(result.unaudited)} dependencies could not be audited (the index gave no "
            f"vulnerability data for their versions): {names}"
        )
        (failures if strict else notes).append(line)
    return failures, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--strict", action="store_true", default=bool(os.environ.get("AUDIT_STRICT"))
    )
    parser.add_argument("--json", type=Path, help="write the findings per set to this file")
    args = parser.parse_args(argv)
    sets = audited_sets()
    union = {n: v for pins in sets.values() for n, v in pins.items()}
    result = parse_report(run_pip_audit(union))
    if result.unaudited:
        filled = fill_from_project_pages(result, union)
        print(f"{filled} dependencies audited from PyPI's project pages (latest release)")
    ignores, problems = load_ignores()
    failures, notes = verdict(result, ignores, date.today(), strict=args.strict)
    failures = problems + failures
    for name, pins in sets.items():
        hits = [f for f in result.findings if pins.get(f.package) == f.version]
        audited = len([n for n in pins if n not in result.unaudited])
        print(f"{name}: {len(pins)} dependencies, {audited} audited, {len(hits)} vulnerabilities")
    for line in notes:
        print(f"note: {line}")
    for line in failures:
        print(f"FAIL: {line}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "sets": {k: dict(sorted(v.items())) for k, v in sets.items()},
                    "findings": [f.__dict__ for f in result.findings],
                    "unaudited": result.unaudited,
                    "failures": failures,
                },
                indent=2,
                default=str,
            )
        )
    print("audit: " + ("FAILED" if failures else "passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""The audit's policy (tests/security/dependency_audit.py) on pip-audit reports: an unaccepted
finding fails, an accepted one passes until its expiry, a malformed acceptance fails. The audit
itself runs as `make audit` (it needs the network); these checks do not."""

from __future__ import annotations

from datetime import date

from tests.security.dependency_audit import (
    audited_sets,
    load_ignores,
    parse_report,
    verdict,
)

REPORT = {
    "dependencies": [
        {
            "name": "Some_Lib",
            "version": "1.0",
            "vulns": [
                {"id": "PYSEC-2099-1", "aliases": ["CVE-2099-0001"], "fix_versions": ["1.1"]}
            ],
        },
        {"name": "clean", "version": "2.0", "vulns": []},
        {"name": "ghost", "version": "0.1", "skip_reason": "Dependency not found on PyPI"},
    ]
}
TODAY = date(2026, 11, 25)


def ignore_file(tmp_path, text):
    path = tmp_path / ".pip-audit-ignore.toml"
    path.write_text(text)
    return load_ignores(path)


def test_an_unaccepted_finding_fails():
    result = parse_report(REPORT)
    failures, _ = verdict(result, [], TODAY, strict=False)
    assert len(failures) == 1 and "some-lib 1.0: PYSEC-2099-1 (fixed in 1.1)" in failures[0]


def test_an_accepted_finding_passes_until_it_expires(tmp_path):
    ignores, problems = ignore_file(
        tmp_path,
        '[[ignore]]\nid = "CVE-2099-0001"\npackage = "some-lib"\n'
        'reason = "only the server side is affected"\nexpires = 2026-12-31\n',
    )
    assert problems == []
    result = parse_report(REPORT)
    failures, notes = verdict(result, ignores, TODAY, strict=False)
    assert failures == [] and any("accepted until 2026-12-31" in n for n in notes)
    failures, _ = verdict(result, ignores, date(2027, 1, 1), strict=False)
    assert len(failures) == 1 and "expired on 2026-12-31" in failures[0]


def test_an_acceptance_needs_a_reason_and_an_expiry(tmp_path):
    _, problems = ignore_file(
        tmp_path,
        '[[ignore]]\nid = "X-1"\npackage = "a"\nexpires = 2027-01-01\n'
        '[[ignore]]\nid = "X-2"\npackage = "a"\nreason = "why"\n',
    )
    assert [p.split(": ", 1)[1] for p in problems] == [
        "needs a reason",
        "needs expires = YYYY-MM-DD",
    ]


def test_unaudited_dependencies_fail_only_when_strict():
    result = parse_report({"dependencies": REPORT["dependencies"][1:]})
    assert verdict(result, [], TODAY, strict=False)[0] == []
    failures, _ = verdict(result, [], TODAY, strict=True)
    assert len(failures) == 1 and "ghost" in failures[0]


def test_each_cloud_package_is_audited_with_its_transitive_dependencies():
    sets = audited_sets()
    assert {"boto3", "botocore", "jmespath", "esdbclient", "grpcio"} <= set(sets["aws package"])
    assert {"google-cloud-firestore", "google-api-core"} <= set(sets["gcp package"])
    assert {"azure-data-tables", "azure-core"} <= set(sets["azure package"])
    for name in ("aws package", "gcp package", "azure package"):
        assert "typer" not in sets[name] and "pytest" not in sets[name]
        assert set(sets[name]) <= set(sets["project (.venv)"])
    assert "pip" not in sets["project (.venv)"]

"""The part of Cloud Logging's query language that infra/gcp's log-based metrics use, applied to
log entries: what `gcloud logging read FILTER` would select, for tests that cannot reach Cloud
Logging. Anything outside that part fails loudly instead of matching by accident.

Supported: terms joined by AND; `path="text"`, `path=number`, `path=("a" OR "b")`, `path:*`
(present), `path>=N`, `path>N`, and `severity>=LEVEL` in LogSeverity's order. A log line a Cloud
Run service writes becomes an entry as Cloud Logging's structured logging makes it: its JSON is
the jsonPayload, less the special fields `severity` (the entry's severity) and `time`.
"""

from __future__ import annotations

import json
import re
from typing import Any

SEVERITIES = ["DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT"]
TERM = re.compile(r"^(?P<path>[A-Za-z_][\w.]*)\s*(?P<op>>=|>|=|:)\s*(?P<value>.+)$")


def entry(line: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    """The LogEntry Cloud Logging stores for one JSON line of a Cloud Run service."""
    payload = dict(line)
    severity = str(payload.pop("severity", "DEFAULT")).upper()
    payload.pop("time", None)
    return {"resource": resource, "severity": severity, "jsonPayload": payload}


def split_and(query: str) -> list[str]:
    terms, depth, current = [], 0, ""
    tokens = re.split(r"(\(|\)|\"(?:[^\"\\]|\\.)*\"|\s+AND\s+)", query)
    for token in tokens:
        if token is None or token == "":
            continue
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        if re.fullmatch(r"\s+AND\s+", token) and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += token
    terms.append(current.strip())
    return terms


def lookup(item: dict[str, Any], path: str) -> Any:
    value: Any = item
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def term_matches(term: str, item: dict[str, Any]) -> bool:
    found = TERM.match(term)
    if not found:
        raise ValueError(f"unsupported filter term: {term!r}")
    path, op, raw = found["path"], found["op"], found["value"].strip()
    value = lookup(item, path)
    if op == ":":
        if raw != "*":
            raise ValueError(f"unsupported ':' term (only ':*'): {term!r}")
        return value is not None
    if path == "severity":
        if op != ">=" or raw not in SEVERITIES:
            raise ValueError(f"unsupported severity term: {term!r}")
        return SEVERITIES.index(str(value)) >= SEVERITIES.index(raw)
    if op == "=":
        if raw.startswith("("):
            options = [json.loads(o) for o in re.split(r"\s+OR\s+", raw.strip("()").strip())]
            return value in options
        return value == json.loads(raw)
    number = float(raw)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return value >= number if op == ">=" else value > number


def matches(query: str, item: dict[str, Any]) -> bool:
    return all(term_matches(term, item) for term in split_and(query))


def extract(extractor: str, item: dict[str, Any]) -> Any:
    """A log-based metric's value_extractor, EXTRACT(path)."""
    found = re.fullmatch(r"EXTRACT\(([\w.]+)\)", extractor)
    if not found:
        raise ValueError(f"unsupported value extractor: {extractor!r}")
    return lookup(item, found[1])

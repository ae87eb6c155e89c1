"""A file of checkpoints (JSON lines or CSV), each translated."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from core.config import JobConfig
from core.errors import RelayError, TranslateError
from core.eventstore import EventStore
from core.tools.translate.common import START, relay_position
from core.tools.translate.positions import translate_position
from core.tools.translate.streams import translate_stream

FIELDS = ["name", "kind", "stream", "position", "revision"]


OUT_FIELDS = [*FIELDS, "target_position", "target_revision", "method", "error"]


def translate_file(
    job: JobConfig, source: EventStore, target: EventStore, src: Path, out: Path
) -> tuple[int, int]:
    """Translate every checkpoint of `src` (JSON lines, or CSV when it ends in .csv) into
    `out` (same format). A row that cannot be translated gets `error` set. Returns (rows,
    errors)."""
    is_csv = src.suffix.lower() == ".csv"
    rows = _read_rows(src, is_csv)
    results = []
    errors = 0
    relayed = relay_position(job)  # one checkpoint read for the whole file
    for row in rows:
        result = dict(row)
        try:
            result.update(_translate_row(job, source, target, row, relayed))
        except (RelayError, ValueError) as e:
            result["error"] = str(e)
            errors += 1
        results.append(result)
    _write_rows(out, results, is_csv or out.suffix.lower() == ".csv")
    return len(results), errors


def _read_rows(src: Path, is_csv: bool) -> list[dict]:
    text = src.read_text(encoding="utf-8")
    if is_csv:
        return [dict(r) for r in csv.DictReader(text.splitlines())]
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise TranslateError(f"{src.name}: line {number} is not JSON: {e}") from None
        if not isinstance(row, dict):
            raise TranslateError(f"{src.name}: line {number} is not a JSON object")
        rows.append(row)
    return rows


def _int(value: object, name: str) -> int | None:
    if value is None or value == "":
        raise ValueError(f"{name} is missing")
    if str(value).strip().lower() == START:
        return None
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ValueError(f"{name} {value!r} is not an integer") from None


def _translate_row(
    job: JobConfig, source: EventStore, target: EventStore, row: dict, relayed: int | None
) -> dict:
    kind = str(row.get("kind") or ("stream" if row.get("stream") else "all"))
    if kind == "all":
        position = _int(row.get("position"), "position")
        t = translate_position(job, source, target, position, relayed=relayed)
        return {"target_position": t.target, "method": t.method, "error": None}
    if kind == "stream":
        stream = row.get("stream")
        if not stream:
            raise ValueError("kind stream needs a stream")
        t = translate_stream(
            job, source, target, str(stream), _int(row.get("revision"), "revision")
        )
        return {"target_revision": t.target, "method": t.method, "error": None}
    raise ValueError(f"kind {kind!r} is neither 'all' nor 'stream'")


def _write_rows(out: Path, rows: list[dict], is_csv: bool) -> None:
    if is_csv:
        with out.open("w", newline="", encoding="utf-8") as f:
            names = list(OUT_FIELDS) + sorted({k for r in rows for k in r if k not in OUT_FIELDS})
            writer = csv.DictWriter(f, fieldnames=names)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: "" if r.get(k) is None else r.get(k) for k in names})
        return
    with out.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")

"""File-backed snapshot of an emulator's log, so a demo's data survives a restart.

Format: gzip'd JSON lines; a header line, then one line per record (bytes as base64).
Written to a temporary file and renamed, so a crash never leaves half a snapshot.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
from pathlib import Path

from esdb_emulator.store import Record, Store

FORMAT = "esdb-emulator-snapshot"
VERSION = 1


class SnapshotError(Exception):
    pass


def save(store: Store, path: str | os.PathLike[str]) -> int:
    """Write the store to `path`; returns the number of records written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    records = store.export_records()
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        header = {"format": FORMAT, "version": VERSION, "next_position": store.head_position}
        f.write(json.dumps(header) + "\n")
        for r in records:
            f.write(
                json.dumps(
                    [
                        r.stream,
                        r.revision,
                        r.event_id,
                        r.type,
                        r.content_type,
                        base64.b64encode(r.data).decode(),
                        base64.b64encode(r.metadata).decode(),
                        r.created,
                        r.position,
                    ]
                )
                + "\n"
            )
    os.replace(tmp, target)
    return len(records)


def load(store: Store, path: str | os.PathLike[str]) -> int:
    """Replace the store's content with the snapshot at `path`; returns the record count."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            header = json.loads(f.readline())
            if (
                not isinstance(header, dict)
                or header.get("format") != FORMAT
                or header.get("version") != VERSION
            ):
                raise SnapshotError(f"{path} is not an esdb-emulator snapshot (version {VERSION})")
            next_position = header["next_position"]
            if not isinstance(next_position, int):
                raise TypeError(f"next_position is {next_position!r}")
            records = []
            for line in f:
                s, rev, eid, typ, ct, data, meta, created, pos = json.loads(line)
                records.append(
                    Record(
                        s,
                        rev,
                        eid,
                        typ,
                        ct,
                        base64.b64decode(data, validate=True),
                        base64.b64decode(meta, validate=True),
                        created,
                        pos,
                    )
                )
    except (OSError, ValueError, TypeError, KeyError, EOFError) as e:
        raise SnapshotError(f"cannot read snapshot {path}: {e!r}") from e
    store.load_records(records, next_position)
    return len(records)

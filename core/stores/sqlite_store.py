"""SQLite checkpoint store: the embedded default for the CLI and the demo.

One row per job in ``relay_jobs`` holds the lease and the checkpoint; conditional writes run in
``BEGIN IMMEDIATE`` transactions, so several processes may share one file (WAL mode).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError

from core.checkpoint import (
    HISTORY_LIMIT,
    Checkpoint,
    Clock,
    ClosingStore,
    Lease,
    SliceRecord,
    utcnow,
)
from core.errors import (
    ConfigError,
    CorruptCheckpointError,
    StoreUnavailableError,
)
from core.stores.lease_rules import (
    check_held,
    check_version,
    checkpoint_json,
    committed,
    describe_invalid,
    format_mismatch,
    history_window,
    next_lease,
    renewed,
    require_same_job,
    require_text,
    require_ttl,
    slice_job_id,
)

FORMAT = 1
"""Record format written by this version; rows of another format are refused, not guessed."""

JOBS = "relay_jobs"
HISTORY = "relay_history"
MEMORY = ":memory:"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {JOBS} (
    job_id     TEXT PRIMARY KEY,
    format     INTEGER NOT NULL,
    owner      TEXT,
    token      INTEGER NOT NULL DEFAULT 0,
    expires_at TEXT,
    version    INTEGER NOT NULL DEFAULT 0,
    checkpoint TEXT
);
CREATE TABLE IF NOT EXISTS {HISTORY} (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    format INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS {HISTORY}_job ON {HISTORY} (job_id, seq);
"""

_URL_HINT = "use sqlite:///relative/path.db, sqlite:////absolute/path.db or sqlite://:memory:"


@dataclass(frozen=True)
class _JobRow:
    owner: str | None
    token: int
    expires_at: datetime | None
    version: int
    checkpoint: str | None


def parse_sqlite_url(url: str) -> tuple[str, dict[str, Any]]:
    """``sqlite:///rel.db`` → ``("rel.db", {})``; ``sqlite:////abs.db?timeout=2`` → ``("/abs.db",
    {"timeout": 2.0})``; ``sqlite://:memory:`` → ``(":memory:", {})``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "sqlite":
        raise ConfigError("not a sqlite:// URL", field="checkpoint_store", hint=_URL_HINT)
    rest, _, query = rest.partition("?")
    options: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key != "timeout":
            raise ConfigError(
                f"unknown sqlite store option {key!r}",
                field="checkpoint_store",
                hint="the only option is ?timeout=SECONDS (how long to wait for a lock)",
            )
        try:
            options["timeout"] = float(value)
        except ValueError:
            options["timeout"] = -1.0
        if not options["timeout"] > 0:
            raise ConfigError(
                "sqlite store option timeout must be a positive number of seconds",
                field="checkpoint_store",
                hint="e.g. sqlite:///esdb-relay.db?timeout=5",
            )
    if rest in (MEMORY, "/" + MEMORY):
        return MEMORY, options
    if not rest.startswith("/"):
        raise ConfigError("sqlite URLs take no host", field="checkpoint_store", hint=_URL_HINT)
    path = rest[1:]
    if not path or path.endswith("/"):
        raise ConfigError("sqlite URL names no file", field="checkpoint_store", hint=_URL_HINT)
    return path, options


class SqliteCheckpointStore(ClosingStore):
    """A ``CheckpointStore`` in one SQLite file (or in memory, for tests).

    A store object is safe to share between threads (one connection, one lock); several store
    objects or processes on one file coordinate through SQLite's own locking.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        now: Clock = utcnow,
        timeout: float = 10.0,
        history_limit: int = HISTORY_LIMIT,
    ) -> None:
        self.path = str(path)
        self._now = now
        self._timeout = timeout
        self._history_limit = history_limit
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def from_url(cls, url: str, *, now: Clock = utcnow) -> SqliteCheckpointStore:
        path, options = parse_sqlite_url(url)
        return cls(path, now=now, **options)

    def __repr__(self) -> str:
        return f"SqliteCheckpointStore({self.path!r})"

    # --- protocol -------------------------------------------------------------------------

    def load(self, job_id: str) -> Checkpoint | None:
        with self._read(job_id) as conn:
            row = self._row(conn, job_id)
            if row is None or row.checkpoint is None:
                return None
            return self._checkpoint(job_id, row)

    def acquire(self, job_id: str, owner: str, ttl_seconds: float) -> Lease:
        require_text(job_id=job_id, owner=owner)
        require_ttl(ttl_seconds)
        with self._write(job_id) as conn:
            row = self._row(conn, job_id)
            lease = next_lease(job_id, owner, ttl_seconds, self._now(), row)
            conn.execute(
                f"INSERT INTO {JOBS} (job_id, format, owner, token, expires_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id) DO UPDATE SET "
                "owner = excluded.owner, token = excluded.token, "
                "expires_at = excluded.expires_at",
                (job_id, FORMAT, owner, lease.token, _iso(lease.expires_at)),
            )
            return lease

    def renew(self, lease: Lease, ttl_seconds: float) -> Lease:
        require_ttl(ttl_seconds)
        with self._write(lease.job_id) as conn:
            self._held(conn, lease)
            new = renewed(lease, self._now(), ttl_seconds)
            conn.execute(
                f"UPDATE {JOBS} SET expires_at = ? WHERE job_id = ?",
                (_iso(new.expires_at), lease.job_id),
            )
            return new

    def commit(self, lease: Lease, checkpoint: Checkpoint) -> Checkpoint:
        require_same_job(lease, checkpoint)
        with self._write(lease.job_id) as conn:
            row = self._held(conn, lease)
            check_version(lease.job_id, checkpoint, row.version)
            stored = committed(checkpoint, self._now())
            conn.execute(
                f"UPDATE {JOBS} SET version = ?, checkpoint = ? WHERE job_id = ?",
                (stored.version, checkpoint_json(stored), lease.job_id),
            )
            return stored

    def release(self, lease: Lease) -> bool:
        with self._write(lease.job_id) as conn:
            cursor = conn.execute(
                f"UPDATE {JOBS} SET owner = NULL, expires_at = NULL "
                "WHERE job_id = ? AND owner = ? AND token = ?",
                (lease.job_id, lease.owner, lease.token),
            )
            return cursor.rowcount == 1

    def record_slice(self, lease_or_job_id: Lease | str, record: SliceRecord) -> None:
        job_id = slice_job_id(lease_or_job_id, record)
        with self._write(job_id) as conn:
            conn.execute(
                f"INSERT INTO {HISTORY} (job_id, format, record) VALUES (?, ?, ?)",
                (job_id, FORMAT, record.model_dump_json()),
            )
            conn.execute(
                f"DELETE FROM {HISTORY} WHERE job_id = ? AND seq < (SELECT min(seq) FROM "
                f"(SELECT seq FROM {HISTORY} WHERE job_id = ? ORDER BY seq DESC LIMIT ?))",
                (job_id, job_id, self._history_limit),
            )

    def history(self, job_id: str, limit: int = 20) -> list[SliceRecord]:
        limit = history_window(limit, self._history_limit)
        with self._read(job_id) as conn:
            rows = conn.execute(
                f"SELECT format, record FROM {HISTORY} WHERE job_id = ? ORDER BY seq DESC LIMIT ?",
                (job_id, limit),
            ).fetchall()
        records = []
        for fmt, text in rows:
            if fmt != FORMAT:
                raise CorruptCheckpointError(job_id, HISTORY, _format_mismatch(fmt))
            try:
                records.append(SliceRecord.model_validate_json(text))
            except (ValidationError, TypeError) as exc:
                raise CorruptCheckpointError(job_id, HISTORY, describe_invalid(exc)) from None
        return records

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- internals ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        if self.path != MEMORY:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        try:
            # Switching to WAL needs a moment of exclusive access; racing processes retry.
            deadline = time.monotonic() + self._timeout
            while True:
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            conn.execute("PRAGMA synchronous=FULL")  # a lost commit would replay written events
            tables = {
                name
                for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
                    (JOBS, HISTORY),
                )
            }
            if tables != {JOBS, HISTORY}:  # readers need no write lock once the schema exists
                try:
                    conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    @contextmanager
    def _read(self, job_id: str) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors(job_id):
            yield self._connect()

    @contextmanager
    def _write(self, job_id: str) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors(job_id):
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _errors(self, job_id: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "no such column" in text or "no such table" in text:
                raise CorruptCheckpointError(
                    job_id, JOBS, f"the table does not have esdb-relay's layout ({text})"
                ) from None
            if _is_busy(exc):
                raise StoreUnavailableError(
                    f"checkpoint store {self.path} stayed locked for more than {self._timeout:g}s",
                    hint="another process holds a long write lock on the file; retry, or raise "
                    "the wait with ?timeout=SECONDS in the store URL",
                ) from None
            raise StoreUnavailableError(
                f"checkpoint store {self.path} cannot be used: {text}",
                hint="check that the file and its directory exist and are writable",
            ) from None
        except sqlite3.DatabaseError as exc:
            raise CorruptCheckpointError(job_id, self.path, str(exc)) from None
        except OSError as exc:
            raise StoreUnavailableError(
                f"checkpoint store {self.path} cannot be created: {exc.strerror or exc}",
                hint="check that the directory exists and is writable",
            ) from None

    def _row(self, conn: sqlite3.Connection, job_id: str) -> _JobRow | None:
        found = conn.execute(
            f"SELECT format, owner, token, expires_at, version, checkpoint FROM {JOBS} "
            "WHERE job_id = ?",
            (job_id,),
        ).fetchone()
        if found is None:
            return None
        fmt, owner, token, expires_at, version, checkpoint = found
        if fmt != FORMAT:
            raise CorruptCheckpointError(job_id, JOBS, _format_mismatch(fmt))
        if owner is not None and not isinstance(owner, str):
            raise CorruptCheckpointError(job_id, JOBS, "owner is not text")
        if not isinstance(token, int) or not isinstance(version, int):
            raise CorruptCheckpointError(job_id, JOBS, "token or version is not an integer")
        if checkpoint is not None and not isinstance(checkpoint, str):
            raise CorruptCheckpointError(job_id, JOBS, "checkpoint is not text")
        expiry = None
        if owner is not None:
            try:
                expiry = datetime.fromisoformat(expires_at)
            except (TypeError, ValueError):
                raise CorruptCheckpointError(
                    job_id, JOBS, "lease expiry is not an ISO 8601 time"
                ) from None
            if expiry.tzinfo is None:
                raise CorruptCheckpointError(job_id, JOBS, "lease expiry has no time zone")
        return _JobRow(owner, token, expiry, version, checkpoint)

    def _held(self, conn: sqlite3.Connection, lease: Lease) -> _JobRow:
        return check_held(lease, self._row(conn, lease.job_id), self._now())

    def _checkpoint(self, job_id: str, row: _JobRow) -> Checkpoint:
        assert row.checkpoint is not None
        try:
            data = json.loads(row.checkpoint)
        except ValueError as exc:
            raise CorruptCheckpointError(job_id, JOBS, f"not JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise CorruptCheckpointError(job_id, JOBS, "checkpoint is not a JSON object")
        if data.get("job_id") != job_id:
            raise CorruptCheckpointError(job_id, JOBS, "the record names another job")
        try:
            return Checkpoint.model_validate({**data, "version": row.version})
        except ValidationError as exc:
            raise CorruptCheckpointError(job_id, JOBS, describe_invalid(exc)) from None


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def _format_mismatch(fmt: object) -> str:
    return format_mismatch(fmt, FORMAT)


__all__ = ["FORMAT", "HISTORY", "JOBS", "SqliteCheckpointStore", "parse_sqlite_url"]

"""SQLite checkpoint store: the embedded default for the CLI and the demo.

One row per job in ``relay_jobs`` holds the lease and the checkpoint. A change is an ``UPDATE``
that only matches the row as it was read (core/stores/base.py decides what to write), so several
processes may share one file (WAL mode); history appends run in ``BEGIN IMMEDIATE`` transactions.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from core.errors import ConfigError, CorruptCheckpointError, StoreUnavailableError
from core.stores.base import (
    JobState,
    StateWrite,
    StoreBase,
    checkpoint_json,
    decode_checkpoint,
    decode_slice,
    format_mismatch,
)
from core.stores.models import HISTORY_LIMIT, Checkpoint, Clock, SliceRecord, utcnow
from core.stores.url import read_options, split_store_url

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


def parse_sqlite_url(url: str) -> tuple[str, dict[str, Any]]:
    """``sqlite:///rel.db`` → ``("rel.db", {})``; ``sqlite:////abs.db?timeout=2`` → ``("/abs.db",
    {"timeout": 2.0})``; ``sqlite://:memory:`` → ``(":memory:", {})``."""
    rest, pairs = split_store_url(url, "sqlite", hint=_URL_HINT)
    options = read_options(
        pairs,
        "sqlite",
        {"timeout"},
        unknown_hint="the only option is ?timeout=SECONDS (how long to wait for a lock)",
        convert=_timeout,
    )
    if rest in (MEMORY, "/" + MEMORY):
        return MEMORY, options
    if not rest.startswith("/"):
        raise ConfigError("sqlite URLs take no host", field="checkpoint_store", hint=_URL_HINT)
    path = rest[1:]
    if not path or path.endswith("/"):
        raise ConfigError("sqlite URL names no file", field="checkpoint_store", hint=_URL_HINT)
    return path, options


def _timeout(key: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(
            "sqlite store option timeout must be a positive number of seconds",
            field="checkpoint_store",
            hint="e.g. sqlite:///esdb-relay.db?timeout=5",
        )
    return seconds


class SqliteCheckpointStore(StoreBase):
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
        super().__init__(now=now, history_limit=history_limit)
        self.path = str(path)
        self._timeout = timeout
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None

    scheme = "sqlite"
    parse_url = staticmethod(parse_sqlite_url)

    def __repr__(self) -> str:
        return f"SqliteCheckpointStore({self.path!r})"

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- storage primitives ---------------------------------------------------------------

    def _read_state(self, job_id: str) -> JobState | None:
        with self._use(job_id) as conn:
            found = conn.execute(
                f"SELECT format, owner, token, expires_at, version, checkpoint FROM {JOBS} "
                "WHERE job_id = ?",
                (job_id,),
            ).fetchone()
        if found is None:
            return None
        fmt, owner, token, expires_at, version, checkpoint = found
        if fmt != FORMAT:
            raise CorruptCheckpointError(job_id, JOBS, format_mismatch(fmt, FORMAT))
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
        # The compare-and-swap matches the row's values as stored.
        revision = (owner, token, expires_at, version)
        return JobState(owner, token, expiry, version, checkpoint, revision)

    def _write_state(self, job_id: str, write: StateWrite, read: JobState | None) -> bool:
        expires_at = write.expires_at.isoformat() if write.expires_at else None
        with self._use(job_id) as conn:
            if read is None:
                cursor = conn.execute(
                    f"INSERT INTO {JOBS} (job_id, format, owner, token, expires_at, version) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id) DO NOTHING",
                    (job_id, FORMAT, write.owner, write.token, expires_at, write.version),
                )
                return cursor.rowcount == 1
            columns, values = (
                "owner = ?, token = ?, expires_at = ?, version = ?",
                [
                    write.owner,
                    write.token,
                    expires_at,
                    write.version,
                ],
            )
            if write.checkpoint is not None:
                columns += ", checkpoint = ?"
                values.append(checkpoint_json(write.checkpoint))
            cursor = conn.execute(
                f"UPDATE {JOBS} SET {columns} WHERE job_id = ? AND format = ? AND owner IS ? "
                "AND token = ? AND expires_at IS ? AND version = ?",
                (*values, job_id, FORMAT, *read.revision),
            )
            return cursor.rowcount == 1

    def _decode_checkpoint(self, job_id: str, state: JobState) -> Checkpoint:
        return decode_checkpoint(job_id, JOBS, state.checkpoint, state.version)

    def _append_slice(self, job_id: str, record: SliceRecord) -> bool:
        with self._use(job_id, transaction=True) as conn:
            conn.execute(
                f"INSERT INTO {HISTORY} (job_id, format, record) VALUES (?, ?, ?)",
                (job_id, FORMAT, record.model_dump_json()),
            )
            conn.execute(
                f"DELETE FROM {HISTORY} WHERE job_id = ? AND seq < (SELECT min(seq) FROM "
                f"(SELECT seq FROM {HISTORY} WHERE job_id = ? ORDER BY seq DESC LIMIT ?))",
                (job_id, job_id, self._history_limit),
            )
        return True

    def _newest_slices(self, job_id: str, limit: int) -> list[SliceRecord]:
        with self._use(job_id) as conn:
            rows = conn.execute(
                f"SELECT format, record FROM {HISTORY} WHERE job_id = ? ORDER BY seq DESC LIMIT ?",
                (job_id, limit),
            ).fetchall()
        records = []
        for fmt, text in rows:
            if fmt != FORMAT:
                raise CorruptCheckpointError(job_id, HISTORY, format_mismatch(fmt, FORMAT))
            records.append(decode_slice(job_id, HISTORY, text))
        return records

    # --- the connection -------------------------------------------------------------------

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
    def _use(self, job_id: str, *, transaction: bool = False) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock, with SQLite's errors translated; in a ``BEGIN
        IMMEDIATE`` transaction if asked (statements alone are atomic)."""
        with self._lock, self._errors(job_id):
            conn = self._connect()
            if not transaction:
                yield conn
                return
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


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


register = SqliteCheckpointStore.register  # core.stores.registry calls it for sqlite:// URLs


__all__ = ["FORMAT", "HISTORY", "JOBS", "SqliteCheckpointStore", "parse_sqlite_url", "register"]

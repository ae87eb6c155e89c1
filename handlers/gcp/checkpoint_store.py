"""Firestore checkpoint store: the Google Cloud storage primitives under ``StoreBase``.

Layout (Firestore in Native mode; one collection named by the store URL):

- ``COLLECTION/<job_id>``: the job document — lease (``owner``, ``token``,
  ``lease_expires_at``), checkpoint (``version`` and the ``checkpoint`` map) and ``history_seq``,
  the sequence number of the newest slice record.
- ``COLLECTION/<job_id>/slices/<seq, 20 digits>``: one slice record each, the newest
  ``HISTORY_LIMIT`` kept; each carries ``expire_at`` for an optional Firestore TTL policy.

core/stores/base.py reads the job document, decides, and has it written only if it is unchanged:
a write carries the precondition "last updated at the update time the read returned" (or "does
not exist yet"), which Firestore checks atomically, so two invocations can never both take a
free lease or both commit one version: that, with the token, is the fencing. A slice record,
the history counter and the pruning of the oldest record are one atomic batch under the same
precondition.

docs/stores/firestore.md describes the layout, the TTL policy and the IAM role; firestore.py the
URL, the client and the error translation.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from google.api_core.retry import Retry, if_exception_type
from google.cloud import firestore

from core.errors import CorruptCheckpointError, StoreUnavailableError
from core.stores.base import (
    JobState,
    StateWrite,
    StoreBase,
    decode_checkpoint,
    decode_slice,
    sequence_key,
)
from core.stores.models import HISTORY_LIMIT, Checkpoint, Clock, SliceRecord, utcnow
from handlers.gcp.firestore import (
    CONFLICTS,
    DEFAULT_DATABASE,
    FORMAT,
    READ_RETRYABLE,
    SCHEME,
    WRITE_RETRYABLE,
    describe_format,
    make_client,
    parse_firestore_url,
    plain,
    require_document_id,
    require_int64,
    translate,
    validate_collection_id,
)

SLICES = "slices"
"""The subcollection of a job document that holds its slice records."""

DEFAULT_TIMEOUT = 10.0
"""Seconds one store operation may spend on RPCs and their retries before it gives up."""
DEFAULT_ATTEMPTS = 5
"""Read-decide-write rounds when the job document changed between the read and the write."""
HISTORY_TTL_DAYS = 90.0
"""``expire_at`` of a slice record: this long after it was written (for a TTL policy)."""
MAX_ERROR_CHARS = 20_000
"""A slice record's error text is cut to this length (a Firestore document holds 1 MiB)."""

_SEQ_DIGITS = 20


class FirestoreCheckpointStore(StoreBase):
    """A ``CheckpointStore`` in one Firestore collection.

    Safe to share between threads (the Firestore client is); separate store objects, containers
    or machines coordinate through Firestore's write preconditions.
    """

    backoff_seconds = 0.05

    def __init__(
        self,
        collection: str,
        *,
        now: Clock = utcnow,
        client: firestore.Client | None = None,
        project: str | None = None,
        database: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
        history_limit: int = HISTORY_LIMIT,
        history_ttl_days: float = HISTORY_TTL_DAYS,
    ) -> None:
        validate_collection_id(collection)
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ValueError("timeout must be a positive number of seconds")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        super().__init__(now=now, history_limit=history_limit)
        if not history_ttl_days >= 0:
            raise ValueError("history_ttl_days must not be negative")
        self.collection = collection
        self.state_attempts = self.history_attempts = attempts
        self._timeout = timeout
        self._history_ttl = timedelta(days=history_ttl_days) if history_ttl_days else None
        self._emulator = os.environ.get("FIRESTORE_EMULATOR_HOST") or None
        self._owns_client = client is None
        if client is None:
            client = make_client(collection, project, database or DEFAULT_DATABASE)
        self._client = client
        self.project: str = str(client.project)
        self.database = database or DEFAULT_DATABASE  # with a given client: its database
        self._read = {"retry": _retry(READ_RETRYABLE, timeout), "timeout": timeout}
        self._write = {"retry": _retry(WRITE_RETRYABLE, timeout), "timeout": timeout}
        self._closed = False
        self._close_lock = threading.Lock()

    scheme = SCHEME
    parse_url = staticmethod(parse_firestore_url)  # firestore://COLLECTION?project=...

    def __repr__(self) -> str:
        where = f", emulator={self._emulator!r}" if self._emulator else ""
        return (
            f"FirestoreCheckpointStore({self.collection!r}, project={self.project!r}, "
            f"database={self.database!r}{where})"
        )

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            if self._owns_client:
                # The client has no close(); its GAPIC transport holds the gRPC channel.
                with contextlib.suppress(Exception):  # must not fail a finished invocation
                    self._client._firestore_api._transport.close()

    # --- storage primitives ---------------------------------------------------------------

    def _check_key(self, job_id: str) -> None:
        require_document_id(job_id)

    def _read_state(self, job_id: str) -> JobState | None:
        parsed = self._parse(job_id, self._snapshot(job_id))
        return parsed[0] if parsed else None

    def _write_state(self, job_id: str, write: StateWrite, read: JobState | None) -> bool:
        fields: dict[str, Any] = {
            "owner": write.owner,
            "token": write.token,
            "lease_expires_at": write.expires_at,
            "version": write.version,
        }
        if write.checkpoint is not None:
            fields["checkpoint"] = write.checkpoint.model_dump(exclude={"version"})
            require_int64(fields["checkpoint"], "checkpoint")
            if write.checkpoint.shards is not None:
                # JSON text: a plan's suffixes are lists in a list, which Firestore refuses
                fields["checkpoint"]["shards"] = write.checkpoint.shards.model_dump_json()
        ref = self._job_ref(job_id)
        with self._conflicts() as written:
            if read is None:
                ref.create({**_new_job_doc(), **fields}, **self._write)
            else:
                option = self._client.write_option(last_update_time=read.revision)
                ref.update(fields, option=option, **self._write)
        return bool(written)

    def _decode_checkpoint(self, job_id: str, state: JobState) -> Checkpoint:
        where = f"{self.collection}/{job_id}"
        stored = plain(state.checkpoint)
        if isinstance(stored, dict) and isinstance(stored.get("shards"), str):
            try:
                stored = {**stored, "shards": json.loads(stored["shards"])}
            except ValueError:
                raise CorruptCheckpointError(job_id, where, "the shard plan is not JSON") from None
        return decode_checkpoint(job_id, where, stored, state.version)

    def _append_slice(self, job_id: str, record: SliceRecord) -> bool:
        data = record.model_dump()
        require_int64(data, "slice record")
        if data["error"] is not None and len(data["error"]) > MAX_ERROR_CHARS:  # 1 MiB documents
            cut = len(data["error"]) - MAX_ERROR_CHARS
            data["error"] = data["error"][:MAX_ERROR_CHARS] + f"… (truncated {cut} characters)"
        parsed = self._parse(job_id, self._snapshot(job_id))
        ref = self._job_ref(job_id)
        slices = ref.collection(SLICES)
        seq = (parsed[1] if parsed else 0) + 1
        batch = self._client.batch()
        if parsed is None:
            batch.create(ref, {**_new_job_doc(), "history_seq": seq})
        else:
            option = self._client.write_option(last_update_time=parsed[0].revision)
            batch.update(ref, {"history_seq": seq}, option=option)
        doc: dict[str, Any] = {"format": FORMAT, "seq": seq, "record": data}
        if self._history_ttl is not None:
            doc["expire_at"] = self._now() + self._history_ttl
        batch.set(slices.document(_seq_id(seq)), doc)
        if seq > self._history_limit:  # the one record that just fell out of the window
            batch.delete(slices.document(_seq_id(seq - self._history_limit)))
        with self._conflicts() as written:
            batch.commit(**self._write)
        return bool(written)

    def _newest_slices(self, job_id: str, limit: int) -> list[SliceRecord]:
        slices = self._job_ref(job_id).collection(SLICES)
        query = slices.order_by("seq", direction=firestore.Query.DESCENDING).limit(limit)
        with self._errors():
            snapshots = list(query.stream(**self._read))
        where = f"{self.collection}/{job_id}/{SLICES}"
        records = []
        for snapshot in snapshots:
            data = snapshot.to_dict() or {}
            if data.get("format") != FORMAT or type(data.get("format")) is not int:
                raise CorruptCheckpointError(job_id, where, describe_format(data.get("format")))
            raw = data.get("record")
            if not isinstance(raw, dict):
                raise CorruptCheckpointError(job_id, where, "record is not a map")
            records.append(decode_slice(job_id, where, plain(raw)))
        return records

    def _contended(self, job_id: str, *, history: bool) -> Exception:
        return StoreUnavailableError(
            f"Firestore checkpoint store {self._where()}: the job's document stayed "
            f"contended through {self.state_attempts} transaction attempts",
            hint="another invocation kept writing the same job; retry, or raise "
            "?attempts=N in the store URL",
        )

    # --- internals ------------------------------------------------------------------------

    def _job_ref(self, job_id: str) -> Any:
        require_document_id(job_id)
        return self._client.collection(self.collection).document(job_id)

    def _snapshot(self, job_id: str) -> Any:
        with self._errors():
            return self._job_ref(job_id).get(**self._read)

    def _parse(self, job_id: str, snapshot: Any) -> tuple[JobState, int] | None:
        """The job document as a ``JobState`` and its ``history_seq``; None if there is none."""
        if not snapshot.exists:
            return None
        data = snapshot.to_dict() or {}

        def corrupt(detail: str) -> CorruptCheckpointError:
            return CorruptCheckpointError(job_id, f"{self.collection}/{job_id}", detail)

        fmt = data.get("format")
        if fmt != FORMAT or type(fmt) is not int:
            raise corrupt(describe_format(fmt))
        owner, expires_at = data.get("owner"), data.get("lease_expires_at")
        token, version = data.get("token"), data.get("version")
        checkpoint, history_seq = data.get("checkpoint"), data.get("history_seq")
        if owner is not None and not (isinstance(owner, str) and owner):
            raise corrupt("owner is not text")
        for name, value in (("token", token), ("version", version), ("history_seq", history_seq)):
            if type(value) is not int or value < 0:
                raise corrupt(f"{name} is not a non-negative integer")
        if checkpoint is not None and not isinstance(checkpoint, dict):
            raise corrupt("checkpoint is not a map")
        expiry = None
        if owner is not None:
            if not isinstance(expires_at, datetime):
                raise corrupt("lease_expires_at is not a timestamp")
            expiry = plain(expires_at)
        state = JobState(owner, token, expiry, version, checkpoint, snapshot.update_time)
        return state, history_seq

    def _where(self) -> str:
        where = f"collection {self.collection!r} of Firestore database {self.database!r} in "
        where += f"project {self.project!r}"
        if self._emulator:
            where += f" (emulator at {self._emulator})"
        return where

    @contextmanager
    def _conflicts(self) -> Iterator[list[bool]]:
        """Around a conditional write: the list it yields holds True if the write was applied,
        stays empty if the document changed since it was read."""
        written: list[bool] = []
        try:
            yield written
        except CONFLICTS:
            return
        except Exception as exc:
            raise self._translate(exc) from None
        written.append(True)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            raise self._translate(exc) from None

    def _translate(self, exc: BaseException) -> BaseException:
        return translate(
            exc, self._where(), project=self.project, database=self.database, timeout=self._timeout
        )


def _retry(retryable: tuple[type[Exception], ...], timeout: float) -> Retry:
    return Retry(
        predicate=if_exception_type(*retryable),
        initial=0.1,
        maximum=1.0,
        multiplier=2.0,
        timeout=timeout,
    )


def _new_job_doc() -> dict[str, Any]:
    return {
        "format": FORMAT,
        "owner": None,
        "token": 0,
        "lease_expires_at": None,
        "version": 0,
        "checkpoint": None,
        "history_seq": 0,
    }


def _seq_id(seq: int) -> str:
    return sequence_key(seq, _SEQ_DIGITS)


register = FirestoreCheckpointStore.register  # open_store opens firestore:// URLs from then on


__all__ = [
    "DEFAULT_ATTEMPTS",
    "DEFAULT_TIMEOUT",
    "FORMAT",
    "HISTORY_TTL_DAYS",
    "MAX_ERROR_CHARS",
    "SCHEME",
    "SLICES",
    "FirestoreCheckpointStore",
    "parse_firestore_url",
    "register",
    "validate_collection_id",
]

"""Firestore checkpoint store: the Google Cloud implementation of ``CheckpointStore``.

Layout (Firestore in Native mode; one collection named by the store URL):

- ``COLLECTION/<job_id>``: the job document — lease (``owner``, ``token``,
  ``lease_expires_at``), checkpoint (``version`` and the ``checkpoint`` map) and ``history_seq``,
  the sequence number of the newest slice record.
- ``COLLECTION/<job_id>/slices/<seq, 20 digits>``: one slice record each, the newest
  ``HISTORY_LIMIT`` kept; each carries ``expire_at`` for an optional Firestore TTL policy.

Every conditional write (acquire, renew, commit, release, and the history counter) runs in a
Firestore transaction (``@firestore.transactional``): the transaction reads the job document,
checks owner, token, expiry and version against it, and writes only if they hold. Firestore
serialises transactions that touch the same document, so two invocations can never both see a
free lease or both commit one version: that, with the token, is the fencing.

docs/stores/firestore.md describes the layout, the TTL policy and the IAM role.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import google.auth.exceptions
from google.api_core import exceptions as gexc
from google.api_core import gapic_v1
from google.api_core.retry import Retry, if_exception_type
from google.cloud import firestore
from pydantic import ValidationError

from core.checkpoint import (
    HISTORY_LIMIT,
    Checkpoint,
    Clock,
    ClosingStore,
    Lease,
    SliceRecord,
    register_store,
    utcnow,
)
from core.errors import (
    ConfigError,
    CorruptCheckpointError,
    RelayError,
    StoreUnavailableError,
)
from core.stores.lease_rules import (
    check_held,
    check_version,
    committed,
    describe_invalid,
    format_mismatch,
    history_window,
    next_lease,
    owns,
    renewed,
    require_same_job,
    require_text,
    require_ttl,
    slice_job_id,
)

SCHEME = "firestore"
FORMAT = 1
"""Document format written by this version; documents of another format are refused."""

SLICES = "slices"
"""The subcollection of a job document that holds its slice records."""

DEFAULT_DATABASE = "(default)"
DEFAULT_TIMEOUT = 10.0
"""Seconds one store operation may spend on RPCs and their retries before it gives up."""
DEFAULT_ATTEMPTS = 5
"""Transaction attempts when Firestore aborts a transaction for contention."""
HISTORY_TTL_DAYS = 90.0
"""``expire_at`` of a slice record: this long after it was written (for a TTL policy)."""
MAX_ERROR_CHARS = 20_000
"""A slice record's error text is cut to this length (a Firestore document holds 1 MiB)."""

_INT64_MAX = 2**63 - 1
_SEQ_DIGITS = 20
_ID_RE = re.compile(r"[A-Za-z0-9_.\-]+")
_RESERVED_ID_RE = re.compile(r"__.*__")
_URL_HINT = (
    "use firestore://COLLECTION, optionally with ?project=PROJECT&database=DATABASE"
    "&timeout=SECONDS (e.g. firestore://esdb-relay-checkpoints?project=my-project)"
)
_URL_OPTIONS = {"project", "database", "timeout", "attempts", "history_ttl_days"}

# Errors a read may retry (the Firestore API's own choice); a transaction's commit retries only
# what cannot have been applied.
_READ_RETRYABLE = (
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.ResourceExhausted,
    gexc.ServiceUnavailable,
)
_COMMIT_RETRYABLE = (gexc.ResourceExhausted, gexc.ServiceUnavailable)
_RPC_RETRYABLE = {
    "batch_get_documents": _READ_RETRYABLE,
    "run_query": _READ_RETRYABLE,
    "begin_transaction": _READ_RETRYABLE,
    "rollback": _READ_RETRYABLE,
    "commit": _COMMIT_RETRYABLE,
}

T = TypeVar("T")


# --- URL ------------------------------------------------------------------------------------


def parse_firestore_url(url: str) -> tuple[str, dict[str, Any]]:
    """``firestore://COLLECTION?project=P&database=D&timeout=5`` → ``("COLLECTION", {...})``.

    The store URL names the collection only; the job id comes from the job configuration.
    Credentials never go in the URL: they come from Application Default Credentials.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != SCHEME:
        raise ConfigError("not a firestore:// URL", field="checkpoint_store", hint=_URL_HINT)
    rest, _, query = rest.partition("?")
    collection = rest[:-1] if rest.endswith("/") else rest
    if not collection:
        raise ConfigError(
            "firestore URL names no collection", field="checkpoint_store", hint=_URL_HINT
        )
    if "/" in collection:
        raise ConfigError(
            "firestore URL has a path after the collection name",
            field="checkpoint_store",
            hint="the URL names the collection only (firestore://COLLECTION); the job id comes "
            "from the job configuration (job_id)",
        )
    validate_collection_id(collection)
    options: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _URL_OPTIONS:
            raise ConfigError(
                f"unknown firestore store option {key!r}",
                field="checkpoint_store",
                hint="the options are ?project=, ?database=, ?timeout=SECONDS, ?attempts=N and "
                "?history_ttl_days=DAYS; credentials come from the usual Google Cloud "
                "environment (Application Default Credentials), never from the URL",
            )
        if not value.strip():
            raise ConfigError(
                f"firestore store option {key!r} is empty", field="checkpoint_store", hint=_URL_HINT
            )
        options[key] = _option(key, value.strip())
    return collection, options


def _option(key: str, value: str) -> Any:
    if key in ("project", "database"):
        if any(c.isspace() for c in value) or "/" in value:
            raise ConfigError(
                f"firestore store option {key} is not a valid {key} id",
                field="checkpoint_store",
                hint=_URL_HINT,
            )
        return value
    if key == "attempts":
        try:
            attempts = int(value)
        except ValueError:
            attempts = 0
        if not 1 <= attempts <= 100:
            raise ConfigError(
                "firestore store option attempts must be a whole number from 1 to 100",
                field="checkpoint_store",
                hint="e.g. firestore://esdb-relay-checkpoints?attempts=5",
            )
        return attempts
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if key == "timeout" and not (number > 0 and math.isfinite(number)):
        raise ConfigError(
            "firestore store option timeout must be a positive number of seconds",
            field="checkpoint_store",
            hint="e.g. firestore://esdb-relay-checkpoints?timeout=10",
        )
    if key == "history_ttl_days" and not (number >= 0 and math.isfinite(number)):
        raise ConfigError(
            "firestore store option history_ttl_days must be a number of days, 0 or more",
            field="checkpoint_store",
            hint="0 writes no expire_at field; e.g. ?history_ttl_days=90",
        )
    return number


def validate_collection_id(collection: str) -> None:
    """A collection id the store accepts: letters, digits, '_', '.', '-'; not '.', '..' or
    ``__...__`` (reserved by Firestore). The id itself is not echoed: it came from a URL."""
    if (
        not _ID_RE.fullmatch(collection)
        or len(collection) > 1500
        or collection in (".", "..")
        or _RESERVED_ID_RE.fullmatch(collection)
    ):
        raise ConfigError(
            "the collection named in the firestore URL is not a valid collection id",
            field="checkpoint_store",
            hint="use letters, digits, '_', '.' and '-' (not '.', '..' or __name__), e.g. "
            "firestore://esdb-relay-checkpoints",
        )


# --- the store ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _JobDoc:
    owner: str | None
    token: int
    expires_at: datetime | None
    version: int
    checkpoint: dict[str, Any] | None
    history_seq: int


class _Unchanged(Exception):
    """Raised inside a transaction that decided to write nothing (rolls it back, no commit)."""


class FirestoreCheckpointStore(ClosingStore):
    """A ``CheckpointStore`` in one Firestore collection.

    Safe to share between threads (the Firestore client is); separate store objects, containers
    or machines coordinate through Firestore transactions.
    """

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
        if not 1 <= history_limit <= HISTORY_LIMIT:
            raise ValueError(f"history_limit must be between 1 and {HISTORY_LIMIT}")
        if not history_ttl_days >= 0:
            raise ValueError("history_ttl_days must not be negative")
        self.collection = collection
        self._now = now
        self._timeout = timeout
        self._attempts = attempts
        self._history_limit = history_limit
        self._history_ttl = timedelta(days=history_ttl_days) if history_ttl_days else None
        self._emulator = os.environ.get("FIRESTORE_EMULATOR_HOST") or None
        self._owns_client = client is None
        if client is None:
            client = _make_client(collection, project, database or DEFAULT_DATABASE)
        self._client = client
        self.project: str = str(client.project)
        self.database: str = str(getattr(client, "_database", None) or database or "(default)")
        self._transport = _bound_rpcs(client, timeout)
        self._retry = Retry(
            predicate=if_exception_type(*_READ_RETRYABLE),
            initial=0.1,
            maximum=1.0,
            multiplier=2.0,
            timeout=timeout,
        )
        self._closed = False
        self._close_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, *, now: Clock = utcnow, **options: Any) -> FirestoreCheckpointStore:
        """Open ``firestore://COLLECTION[?project=...&database=...&timeout=...]``. Keyword
        options (client, timeout, ...) are the caller's defaults: what the URL says wins."""
        collection, url_options = parse_firestore_url(url)
        return cls(collection, now=now, **{**options, **url_options})

    def __repr__(self) -> str:
        where = f", emulator={self._emulator!r}" if self._emulator else ""
        return (
            f"FirestoreCheckpointStore({self.collection!r}, project={self.project!r}, "
            f"database={self.database!r}{where})"
        )

    # --- protocol -------------------------------------------------------------------------

    def load(self, job_id: str) -> Checkpoint | None:
        ref = self._job_ref(job_id)
        with self._errors():
            snapshot = ref.get(retry=self._retry, timeout=self._timeout)
        job = self._parse(job_id, snapshot)
        if job is None or job.checkpoint is None:
            return None
        return self._checkpoint(job_id, job)

    def acquire(self, job_id: str, owner: str, ttl_seconds: float) -> Lease:
        require_text(job_id=job_id, owner=owner)
        require_ttl(ttl_seconds)
        ref = self._job_ref(job_id)

        def body(transaction: firestore.Transaction) -> Lease:
            job = self._parse(job_id, ref.get(transaction=transaction, **self._call))
            lease = next_lease(job_id, owner, ttl_seconds, self._now(), job)
            fields = {"owner": owner, "token": lease.token, "lease_expires_at": lease.expires_at}
            if job is None:
                transaction.set(ref, {**_new_job_doc(), **fields})
            else:
                transaction.update(ref, fields)
            return lease

        return self._transact(body)

    def renew(self, lease: Lease, ttl_seconds: float) -> Lease:
        require_ttl(ttl_seconds)
        ref = self._job_ref(lease.job_id)

        def body(transaction: firestore.Transaction) -> Lease:
            self._held(
                lease, self._parse(lease.job_id, ref.get(transaction=transaction, **self._call))
            )
            new = renewed(lease, self._now(), ttl_seconds)
            transaction.update(ref, {"lease_expires_at": new.expires_at})
            return new

        return self._transact(body)

    def commit(self, lease: Lease, checkpoint: Checkpoint) -> Checkpoint:
        require_same_job(lease, checkpoint)
        ref = self._job_ref(lease.job_id)
        _require_int64(checkpoint.model_dump(), "checkpoint")

        def body(transaction: firestore.Transaction) -> Checkpoint:
            job = self._held(
                lease, self._parse(lease.job_id, ref.get(transaction=transaction, **self._call))
            )
            check_version(lease.job_id, checkpoint, job.version)
            stored = committed(checkpoint, self._now())
            transaction.update(
                ref,
                {"version": stored.version, "checkpoint": stored.model_dump(exclude={"version"})},
            )
            return stored

        return self._transact(body)

    def release(self, lease: Lease) -> bool:
        ref = self._job_ref(lease.job_id)

        def body(transaction: firestore.Transaction) -> bool:
            job = self._parse(lease.job_id, ref.get(transaction=transaction, **self._call))
            if not owns(lease, job):
                raise _Unchanged  # not ours (any more): roll back instead of committing nothing
            transaction.update(ref, {"owner": None, "lease_expires_at": None})
            return True

        try:
            return self._transact(body)
        except _Unchanged:
            return False

    def record_slice(self, lease_or_job_id: Lease | str, record: SliceRecord) -> None:
        job_id = slice_job_id(lease_or_job_id, record)
        ref = self._job_ref(job_id)
        slices = ref.collection(SLICES)
        data = record.model_dump()
        _require_int64(data, "slice record")
        if data["error"] is not None and len(data["error"]) > MAX_ERROR_CHARS:  # 1 MiB documents
            cut = len(data["error"]) - MAX_ERROR_CHARS
            data["error"] = data["error"][:MAX_ERROR_CHARS] + f"… (truncated {cut} characters)"

        def body(transaction: firestore.Transaction) -> None:
            job = self._parse(job_id, ref.get(transaction=transaction, **self._call))
            seq = (job.history_seq if job else 0) + 1
            if job is None:
                transaction.set(ref, {**_new_job_doc(), "history_seq": seq})
            else:
                transaction.update(ref, {"history_seq": seq})
            doc: dict[str, Any] = {"format": FORMAT, "seq": seq, "record": data}
            if self._history_ttl is not None:
                doc["expire_at"] = self._now() + self._history_ttl
            transaction.set(slices.document(_seq_id(seq)), doc)
            if seq > self._history_limit:  # the one record that just fell out of the window
                transaction.delete(slices.document(_seq_id(seq - self._history_limit)))

        self._transact(body)

    def history(self, job_id: str, limit: int = 20) -> list[SliceRecord]:
        limit = history_window(limit, self._history_limit)
        slices = self._job_ref(job_id).collection(SLICES)
        if limit == 0:
            return []
        query = slices.order_by("seq", direction=firestore.Query.DESCENDING).limit(limit)
        with self._errors():
            snapshots = list(query.stream(retry=self._retry, timeout=self._timeout))
        where = f"{self.collection}/{job_id}/{SLICES}"
        records = []
        for snapshot in snapshots:
            data = snapshot.to_dict() or {}
            if data.get("format") != FORMAT or type(data.get("format")) is not int:
                raise CorruptCheckpointError(job_id, where, _format_mismatch(data.get("format")))
            raw = data.get("record")
            if not isinstance(raw, dict):
                raise CorruptCheckpointError(job_id, where, "record is not a map")
            try:
                record = SliceRecord.model_validate(_plain(raw))
            except ValidationError as exc:
                raise CorruptCheckpointError(job_id, where, describe_invalid(exc)) from None
            if record.job_id != job_id:
                raise CorruptCheckpointError(job_id, where, "a slice record names another job")
            records.append(record)
        return records

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            if self._owns_client and self._transport is not None:
                with contextlib.suppress(Exception):  # must not fail a finished invocation
                    self._transport.close()

    # --- internals ------------------------------------------------------------------------

    @property
    def _call(self) -> dict[str, Any]:
        return {"retry": self._retry, "timeout": self._timeout}

    def _job_ref(self, job_id: str) -> Any:
        _require_document_id(job_id)
        return self._client.collection(self.collection).document(job_id)

    def _where(self) -> str:
        where = f"collection {self.collection!r} of Firestore database {self.database!r} in "
        where += f"project {self.project!r}"
        if self._emulator:
            where += f" (emulator at {self._emulator})"
        return where

    def _transact(self, body: Callable[[firestore.Transaction], T]) -> T:
        """Run ``body`` in a transaction, again after a contention abort (jittered backoff).

        The library's own retry loop re-runs an aborted transaction at once, which under
        contention can abort every racer again (the emulator does that); here each attempt is
        one transaction and racers spread out before trying again.
        """
        for attempt in range(1, self._attempts + 1):
            run = firestore.transactional(body)
            try:
                return run(self._client.transaction(max_attempts=1))
            except Exception as exc:
                decided = _find(exc, (RelayError, _Unchanged))
                if decided is not None:  # the body raised it: nothing was committed
                    raise decided from None
                if _find(exc, gexc.Aborted) is None:
                    raise self._translate(exc) from None
                if attempt == self._attempts:
                    raise StoreUnavailableError(
                        f"Firestore checkpoint store {self._where()}: the job's document stayed "
                        f"contended through {self._attempts} transaction attempts",
                        hint="another invocation kept writing the same job; retry, or raise "
                        "?attempts=N in the store URL",
                    ) from None
            time.sleep(random.uniform(0, min(1.0, 0.05 * 2**attempt)))
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            raise self._translate(exc) from None

    def _translate(self, exc: BaseException) -> BaseException:
        """What a Firestore or google-auth failure means for the caller; other errors as they
        are. Messages name the collection and the fix, never credentials."""
        auth = _find(exc, google.auth.exceptions.GoogleAuthError)
        if auth is not None:
            return StoreUnavailableError(
                f"Firestore checkpoint store {self._where()} cannot get credentials "
                f"({type(auth).__name__})",
                hint="run under a service account (Cloud Functions provides one), or set "
                "GOOGLE_APPLICATION_CREDENTIALS / run `gcloud auth application-default login`; "
                "for the emulator set FIRESTORE_EMULATOR_HOST",
            )
        api = _find(exc, (gexc.GoogleAPICallError, gexc.RetryError))
        if api is None:
            return exc
        reason = _reason(api)
        if isinstance(api, gexc.PermissionDenied | gexc.Unauthenticated):
            return StoreUnavailableError(
                f"Firestore checkpoint store {self._where()} refused access: {reason}",
                hint=f"grant the function's service account roles/datastore.user on project "
                f"{self.project!r} (see docs/stores/firestore.md), or check its credentials",
            )
        if isinstance(api, gexc.NotFound):
            return StoreUnavailableError(
                f"Firestore checkpoint store {self._where()} was not found: {reason}",
                hint="create the database (`gcloud firestore databases create --database="
                f"{self.database} --location=REGION`, Native mode), or fix ?project= / "
                "?database= in the store URL",
            )
        if isinstance(api, gexc.FailedPrecondition):
            return StoreUnavailableError(
                f"Firestore checkpoint store {self._where()} cannot be used: {reason}",
                hint="the database must be a Firestore database in Native mode (not Datastore "
                "mode); see docs/stores/firestore.md",
            )
        return StoreUnavailableError(
            f"Firestore checkpoint store {self._where()} is unavailable: {reason}",
            hint="check that the function reaches firestore.googleapis.com (Private Google "
            "Access on its subnet) or, for the emulator, that FIRESTORE_EMULATOR_HOST names a "
            f"running emulator; the slice is retried (raise ?timeout=SECONDS above "
            f"{self._timeout:g} if the store is slow)",
        )

    def _parse(self, job_id: str, snapshot: Any) -> _JobDoc | None:
        if not snapshot.exists:
            return None
        data = snapshot.to_dict() or {}
        where = f"{self.collection}/{job_id}"

        def corrupt(detail: str) -> CorruptCheckpointError:
            return CorruptCheckpointError(job_id, where, detail)

        fmt = data.get("format")
        if fmt != FORMAT or type(fmt) is not int:
            raise corrupt(_format_mismatch(fmt))
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
            expiry = _plain(expires_at)
        return _JobDoc(owner, token, expiry, version, checkpoint, history_seq)

    def _held(self, lease: Lease, job: _JobDoc | None) -> _JobDoc:
        return check_held(lease, job, self._now())

    def _checkpoint(self, job_id: str, job: _JobDoc) -> Checkpoint:
        assert job.checkpoint is not None
        where = f"{self.collection}/{job_id}"
        if job.checkpoint.get("job_id") != job_id:
            raise CorruptCheckpointError(job_id, where, "the checkpoint names another job")
        try:
            return Checkpoint.model_validate({**_plain(job.checkpoint), "version": job.version})
        except ValidationError as exc:
            raise CorruptCheckpointError(job_id, where, describe_invalid(exc)) from None


# --- helpers --------------------------------------------------------------------------------


def _make_client(collection: str, project: str | None, database: str) -> firestore.Client:
    try:
        return firestore.Client(project=project, database=database)
    except google.auth.exceptions.DefaultCredentialsError:
        raise ConfigError(
            f"no Google Cloud credentials for the Firestore checkpoint store (collection "
            f"{collection!r})",
            field="checkpoint_store",
            hint="run under a service account (Cloud Functions provides one), or set "
            "GOOGLE_APPLICATION_CREDENTIALS / run `gcloud auth application-default login`; for "
            "the emulator set FIRESTORE_EMULATOR_HOST=HOST:PORT",
        ) from None
    except OSError:  # "Project was not passed and could not be determined from the environment"
        raise ConfigError(
            f"no Google Cloud project for the Firestore checkpoint store (collection "
            f"{collection!r})",
            field="checkpoint_store",
            hint="add ?project=PROJECT to the store URL or set GOOGLE_CLOUD_PROJECT",
        ) from None


def _bound_rpcs(client: Any, timeout: float) -> Any:
    """Bound every RPC a transaction makes by ``timeout`` (retries included).

    The transaction calls (begin, commit, rollback) take no retry or timeout argument and
    default to 60 s of retries; an unreachable store must fail in seconds, so their defaults
    are replaced on this client's GAPIC transport. Returns the transport (to close it), or None
    if this library version is laid out differently (then the library defaults apply).
    """
    try:
        transport = client._firestore_api._transport
        wrapped = transport._wrapped_methods
    except AttributeError:  # pragma: no cover - another google-cloud-firestore layout
        return None
    for name, retryable in _RPC_RETRYABLE.items():
        method = getattr(transport, name, None)
        if method is None or method not in wrapped:  # pragma: no cover
            continue
        wrapped[method] = gapic_v1.method.wrap_method(
            method,
            default_retry=Retry(
                predicate=if_exception_type(*retryable),
                initial=0.1,
                maximum=1.0,
                multiplier=2.0,
                timeout=timeout,
            ),
            default_timeout=timeout,
            client_info=gapic_v1.client_info.ClientInfo(),
        )
    return transport


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
    return f"{seq:0{_SEQ_DIGITS}d}"


def _find(exc: BaseException, types: type | tuple[type, ...]) -> BaseException | None:
    """The first exception of ``types`` in ``exc``'s cause/context chain (a failed rollback
    can hide the error that made the library roll back)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or any(current is s for s in seen):
            continue
        if isinstance(current, types):
            return current
        seen.append(current)
        todo += [current.__cause__, current.__context__]
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, gexc.RetryError):
        text = f"gave up retrying ({exc.message})"
        if exc.cause is not None:
            text += f"; last error: {_reason(exc.cause)}"
    else:
        text = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
    text = " ".join(str(text).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _plain(value: Any) -> Any:
    """Firestore's values as plain Python: timestamps as ``datetime`` in UTC."""
    if isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return datetime(
            moment.year,
            moment.month,
            moment.day,
            moment.hour,
            moment.minute,
            moment.second,
            moment.microsecond,
            tzinfo=UTC,
        )
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _require_int64(value: Any, what: str) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _require_int64(item, what)
    elif isinstance(value, int) and not isinstance(value, bool) and value > _INT64_MAX:
        raise ValueError(f"{what} holds {value}, over Firestore's 64-bit integers")


def _require_document_id(job_id: str) -> None:
    if (
        not isinstance(job_id, str)
        or not job_id
        or "/" in job_id
        or job_id in (".", "..")
        or _RESERVED_ID_RE.fullmatch(job_id)
        or len(job_id.encode()) > 1500
    ):
        raise ValueError(
            f"job id {job_id!r} cannot name a Firestore document (no '/', not '.', '..' or "
            "__name__, at most 1500 bytes)"
        )


def _format_mismatch(fmt: object) -> str:
    if fmt is None:
        return "no format field: not a document written by esdb-relay"
    return format_mismatch(fmt, FORMAT, noun="document")


def register() -> None:
    """Make ``core.checkpoint.open_store`` open ``firestore://COLLECTION`` URLs (idempotent)."""
    register_store(SCHEME, FirestoreCheckpointStore.from_url)


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

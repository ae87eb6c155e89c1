"""Azure Table Storage checkpoint store (``azuretable://TABLE``), with ETag optimistic concurrency.

Layout (one partition per job, see docs/stores/azure-table.md):

- ``PartitionKey = job id, RowKey = "state"``: the lease (``Owner``, ``Token``, ``ExpiresAt``) and
  the checkpoint (``Version`` and the ``Checkpoint`` JSON, without its version).
- ``RowKey = "history"``: the slice counter ``Last``.
- ``RowKey = "slice-<inverted zero-padded sequence>"``: one slice record each, so a partition
  query returns the newest first; only the newest ``history_limit`` are kept.

Every change is read → decide → write with ``If-Match: <ETag of the read>`` (``create_entity``
when there is no row yet), so a decision is only stored if the row did not change since it was
read; on a conflict the store reads again and decides again. A decision that fails raises
``LeaseLostError`` and writes nothing.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import islice
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlsplit

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
    PermanentError,
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
    owns,
    renewed,
    require_same_job,
    require_text,
    require_ttl,
    slice_job_id,
)

try:
    from azure.core import MatchConditions
    from azure.core.exceptions import (
        AzureError,
        ClientAuthenticationError,
        HttpResponseError,
        ResourceExistsError,
        ResourceModifiedError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )
    from azure.data.tables import (
        EdmType,
        EntityProperty,
        TableClient,
        TableServiceClient,
        TableTransactionError,
        UpdateMode,
    )
except ImportError as exc:  # pragma: no cover - only without the azure extra
    _SDK_MISSING: ImportError | None = exc
else:
    _SDK_MISSING = None

SCHEME = "azuretable"
FORMAT = 1
"""Record format written by this version; entities of another format are refused, not guessed."""

STATE_ROW = "state"
HISTORY_ROW = "history"
SLICE_PREFIX = "slice-"
_SLICE_END = "slice."  # the first RowKey after every "slice-…" key ('.' follows '-')
_SEQ_DIGITS = 19
_SEQ_MAX = 10**_SEQ_DIGITS - 1

CONNECTION_STRING_SETTING = "AZURE_STORAGE_CONNECTION_STRING"
PROPERTY_LIMIT = 64 * 1024
"""Bytes per property value; strings count UTF-16 (so at most 32K characters)."""

_STATE_ATTEMPTS = 6  # read-decide-write rounds before a contended change gives up
_HISTORY_ATTEMPTS = 12
_MAX_PRUNE_PER_WRITE = 98  # an entity group transaction holds at most 100 operations
_TRUNCATED = " … (truncated to fit Azure Table Storage's 64 KiB property limit)"

_TABLE_RE = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
_KEY_FORBIDDEN = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_URL_HINT = (
    "use azuretable://TABLE (3-63 letters and digits, starting with a letter), optionally "
    "?account_url=https://ACCOUNT.table.core.windows.net for a managed identity; the job id "
    "comes from the job configuration, not the URL"
)
_URL_OPTIONS = {
    "account_url",
    "connection_setting",
    "retry_total",
    "connection_timeout",
    "read_timeout",
    "create_table",
}


def _require_sdk() -> None:
    if _SDK_MISSING is not None:
        raise ConfigError(
            f"the Azure Table Storage checkpoint store needs azure-data-tables ({_SDK_MISSING})",
            field="checkpoint_store",
            hint="install it with `pip install 'esdb-relay[azure]'`",
        )


# --- URL and settings -----------------------------------------------------------------------


def parse_azuretable_url(url: str) -> tuple[str, dict[str, Any]]:
    """``azuretable://relay?retry_total=1`` → ``("relay", {"retry_total": 1})``.

    Values are never echoed in errors: a misplaced secret must not reach a log.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != SCHEME:
        raise ConfigError("not an azuretable:// URL", field="checkpoint_store", hint=_URL_HINT)
    rest, _, query = rest.partition("?")
    table = rest[:-1] if rest.endswith("/") else rest
    if "/" in table:
        raise ConfigError(
            "azuretable:// URLs name only a table, no path",
            field="checkpoint_store",
            hint=_URL_HINT,
        )
    if not _TABLE_RE.fullmatch(table) or table.lower() == "tables":
        raise ConfigError(
            "not a valid Azure table name in the azuretable:// URL",
            field="checkpoint_store",
            hint=_URL_HINT,
        )
    options: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _URL_OPTIONS:
            raise ConfigError(
                f"unknown azuretable store option {key[:40]!r}",
                field="checkpoint_store",
                hint="options: " + ", ".join(sorted(_URL_OPTIONS)) + " (keys and SAS tokens "
                "belong in a connection string setting, never in the store URL)",
            )
        options[key] = _url_option(key, value)
    return table, options


def _url_option(key: str, value: str) -> Any:
    if key == "account_url":
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                "account_url is not an http(s) URL",
                field="checkpoint_store",
                hint="e.g. ?account_url=https://ACCOUNT.table.core.windows.net",
            )
        if parts.query or "@" in parts.netloc:
            raise ConfigError(
                "account_url must not carry a SAS token or credentials",
                field="checkpoint_store",
                hint=f"put SAS connection strings in {CONNECTION_STRING_SETTING} (or the app "
                "setting named by ?connection_setting=), never in the store URL",
            )
        return value
    if key == "connection_setting":
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}", value):
            raise ConfigError(
                "connection_setting must name an environment variable / app setting",
                field="checkpoint_store",
                hint="e.g. ?connection_setting=RELAY_STORAGE (the setting holds the string)",
            )
        return value
    if key == "create_table":
        if value.lower() not in ("true", "false", "1", "0"):
            raise ConfigError(
                "create_table must be true or false", field="checkpoint_store", hint=_URL_HINT
            )
        return value.lower() in ("true", "1")
    if key == "retry_total":
        if not value.isdigit() or int(value) > 10:
            raise ConfigError(
                "retry_total must be a whole number from 0 to 10",
                field="checkpoint_store",
                hint="e.g. ?retry_total=2",
            )
        return int(value)
    try:  # connection_timeout, read_timeout
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= 300:
        raise ConfigError(
            f"{key} must be a number of seconds above 0 and at most 300",
            field="checkpoint_store",
            hint=f"e.g. ?{key}=5",
        )
    return seconds


@dataclass(frozen=True)
class _Connection:
    """How to reach the account; ``source`` says where it came from and holds no secret."""

    source: str
    connection_string: str | None = None
    account_url: str | None = None
    credential: Any = None
    owns_credential: bool = False  # made here (DefaultAzureCredential): close it with the store


def _resolve_connection(
    *,
    connection_string: str | None,
    connection_setting: str | None,
    account_url: str | None,
    credential: Any,
    environ: Mapping[str, str],
) -> _Connection:
    if connection_string:
        return _Connection("a connection string given by the caller", connection_string)
    if connection_setting:
        value = environ.get(connection_setting)
        if not value:
            raise ConfigError(
                f"app setting {connection_setting} is not set",
                field="checkpoint_store",
                hint=f"set {connection_setting} to the storage account's connection string "
                "(or a Key Vault reference to it)",
            )
        return _Connection(f"app setting {connection_setting}", value)
    if account_url:
        if credential is None:
            try:
                from azure.identity import DefaultAzureCredential
            except ImportError:
                raise ConfigError(
                    "account_url needs azure-identity for a managed identity / Entra ID login, "
                    "and it is not installed",
                    field="checkpoint_store",
                    hint=f"install azure-identity, or set {CONNECTION_STRING_SETTING} and drop "
                    "?account_url=",
                ) from None
            return _Connection(
                f"Entra ID at {account_url}",
                account_url=account_url,
                credential=DefaultAzureCredential(),
                owns_credential=True,
            )
        return _Connection(
            f"Entra ID at {account_url}", account_url=account_url, credential=credential
        )
    value = environ.get(CONNECTION_STRING_SETTING)
    if value:
        return _Connection(f"app setting {CONNECTION_STRING_SETTING}", value)
    raise ConfigError(
        "no connection settings for the Azure Table Storage checkpoint store",
        field="checkpoint_store",
        hint=f"set {CONNECTION_STRING_SETTING} (UseDevelopmentStorage=true for Azurite), or "
        "give ?account_url=https://ACCOUNT.table.core.windows.net with azure-identity installed "
        "(managed identity)",
    )


# --- the store ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _State:
    """The job's ``state`` entity; ``etag`` None means there is none yet."""

    owner: str | None
    token: int
    expires_at: datetime | None
    version: int
    checkpoint: str | None
    etag: str | None


class AzureTableCheckpointStore(ClosingStore):
    """A ``CheckpointStore`` in one Azure table (Azure Storage or Azurite).

    A store object may be shared between threads; separate objects, processes and function
    instances coordinate through ETags only.
    """

    def __init__(
        self,
        table: str,
        *,
        connection_string: str | None = None,
        connection_setting: str | None = None,
        account_url: str | None = None,
        credential: Any = None,
        now: Clock = utcnow,
        history_limit: int = HISTORY_LIMIT,
        create_table: bool = True,
        retry_total: int = 2,
        connection_timeout: float = 3.0,
        read_timeout: float = 10.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        _require_sdk()
        if not _TABLE_RE.fullmatch(table):
            raise ConfigError(
                "not a valid Azure table name", field="checkpoint_store", hint=_URL_HINT
            )
        if not 1 <= history_limit <= HISTORY_LIMIT:
            raise ValueError(f"history_limit must be between 1 and {HISTORY_LIMIT}")
        self.table = table
        self._now = now
        self._history_limit = history_limit
        self._create_table = create_table
        self._table_ready = False
        connection = _resolve_connection(
            connection_string=connection_string,
            connection_setting=connection_setting,
            account_url=account_url,
            credential=credential,
            environ=os.environ if environ is None else environ,
        )
        self._source = connection.source
        self._owned_credential = connection.credential if connection.owns_credential else None
        client_options: dict[str, Any] = {
            "retry_total": retry_total,
            "retry_backoff_factor": 0.2,
            "retry_backoff_max": 2,
            "connection_timeout": connection_timeout,
            "read_timeout": read_timeout,
        }
        try:
            if connection.connection_string is not None:
                service = TableServiceClient.from_connection_string(
                    connection.connection_string, **client_options
                )
            else:
                service = TableServiceClient(
                    endpoint=connection.account_url or "",
                    credential=connection.credential,
                    **client_options,
                )
        except (ValueError, TypeError, AzureError):
            # The SDK's message may quote the string; say only where it came from.
            raise ConfigError(
                f"the Azure Storage connection from {self._source} is not usable",
                field="checkpoint_store",
                hint="use a connection string like DefaultEndpointsProtocol=https;"
                "AccountName=…;AccountKey=…;EndpointSuffix=core.windows.net, or an https "
                "account_url with a managed identity",
            ) from None
        self._service = service
        self._client: TableClient = service.get_table_client(table)
        parts = urlsplit(service.url)
        self.endpoint = f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")
        self._retry_hint = (
            f"timeouts: connection {connection_timeout:g}s, read {read_timeout:g}s, "
            f"{retry_total} retries (set ?connection_timeout=, ?read_timeout=, ?retry_total= "
            "in the store URL)"
        )

    @classmethod
    def from_url(
        cls, url: str, *, now: Clock = utcnow, **options: Any
    ) -> AzureTableCheckpointStore:
        """Open ``azuretable://TABLE[?option=value&...]``; URL options win over ``options``."""
        _require_sdk()
        table, url_options = parse_azuretable_url(url)
        return cls(table, now=now, **{**options, **url_options})

    def __repr__(self) -> str:
        return (
            f"AzureTableCheckpointStore(table={self.table!r}, endpoint={self.endpoint!r}, "
            f"auth={self._source!r})"
        )

    # --- protocol -------------------------------------------------------------------------

    def load(self, job_id: str) -> Checkpoint | None:
        _require_key(job_id=job_id)
        with self._errors(job_id):
            state = self._read_state(job_id)
        if state is None or state.checkpoint is None:
            return None
        return self._checkpoint(job_id, state)

    def acquire(self, job_id: str, owner: str, ttl_seconds: float) -> Lease:
        _require_key(job_id=job_id)
        require_text(owner=owner)
        require_ttl(ttl_seconds)
        with self._errors(job_id):
            for attempt in range(_STATE_ATTEMPTS):
                state = self._read_state(job_id)
                lease = next_lease(job_id, owner, ttl_seconds, self._now(), state)
                new = _State(
                    owner=owner,
                    token=lease.token,
                    expires_at=lease.expires_at,
                    version=state.version if state else 0,
                    checkpoint=state.checkpoint if state else None,
                    etag=None,
                )
                if self._write_state(job_id, new, state.etag if state else None):
                    return lease
                _pause(attempt)
        raise _contended(job_id)

    def renew(self, lease: Lease, ttl_seconds: float) -> Lease:
        require_ttl(ttl_seconds)
        _require_key(job_id=lease.job_id)
        with self._errors(lease.job_id):
            for attempt in range(_STATE_ATTEMPTS):
                state = self._held(lease)
                new = renewed(lease, self._now(), ttl_seconds)
                if self._write_state(
                    lease.job_id, replace(state, expires_at=new.expires_at), state.etag
                ):
                    return new
                _pause(attempt)
        raise _contended(lease.job_id)

    def commit(self, lease: Lease, checkpoint: Checkpoint) -> Checkpoint:
        require_same_job(lease, checkpoint)
        _require_key(job_id=lease.job_id)
        with self._errors(lease.job_id):
            for attempt in range(_STATE_ATTEMPTS):
                state = self._held(lease)
                check_version(lease.job_id, checkpoint, state.version)
                stored = committed(checkpoint, self._now())
                text = checkpoint_json(stored)
                _fits(text, "the checkpoint")
                new = replace(state, version=stored.version, checkpoint=text)
                if self._write_state(lease.job_id, new, state.etag):
                    return stored
                _pause(attempt)
        raise _contended(lease.job_id)

    def release(self, lease: Lease) -> bool:
        _require_key(job_id=lease.job_id)
        with self._errors(lease.job_id):
            for attempt in range(_STATE_ATTEMPTS):
                state = self._read_state(lease.job_id)
                if not owns(lease, state):
                    return False
                if self._write_state(
                    lease.job_id, replace(state, owner=None, expires_at=None), state.etag
                ):
                    return True
                _pause(attempt)
        raise _contended(lease.job_id)

    def record_slice(self, lease_or_job_id: Lease | str, record: SliceRecord) -> None:
        job_id = slice_job_id(lease_or_job_id, record)
        _require_key(job_id=job_id)
        text = _record_json(record)
        with self._errors(job_id):
            for attempt in range(_HISTORY_ATTEMPTS):
                if self._append_slice(job_id, text):
                    return
                _pause(attempt)
        raise StoreUnavailableError(
            f"the slice history of job {job_id!r} in Azure table {self.table!r} kept changing "
            f"under this writer ({_HISTORY_ATTEMPTS} attempts)",
            hint="many invocations are recording slices of one job at once; retry",
        )

    def history(self, job_id: str, limit: int = 20) -> list[SliceRecord]:
        limit = history_window(limit, self._history_limit)
        _require_key(job_id=job_id)
        if limit == 0:
            return []
        with self._errors(job_id):
            entities = list(
                islice(self._slices(job_id, SLICE_PREFIX, select=None, page=limit), limit)
            )
        return [self._slice_record(job_id, entity) for entity in entities]

    def close(self) -> None:
        self._client.close()
        self._service.close()
        if self._owned_credential is not None and hasattr(self._owned_credential, "close"):
            self._owned_credential.close()

    # --- state row ------------------------------------------------------------------------

    def _read_state(self, job_id: str) -> _State | None:
        entity = self._get(job_id, STATE_ROW)
        return None if entity is None else self._state(job_id, entity)

    def _held(self, lease: Lease) -> _State:
        return check_held(lease, self._read_state(lease.job_id), self._now())

    def _write_state(self, job_id: str, state: _State, etag: str | None) -> bool:
        """Create (``etag`` None) or replace the state entity if unchanged since read.

        False when another writer got there first (nothing was written).
        """
        entity: dict[str, Any] = {
            "PartitionKey": job_id,
            "RowKey": STATE_ROW,
            "Format": FORMAT,
            "Token": EntityProperty(state.token, EdmType.INT64),
            "Version": EntityProperty(state.version, EdmType.INT64),
        }
        if state.owner is not None:
            assert state.expires_at is not None
            entity["Owner"] = state.owner
            entity["ExpiresAt"] = state.expires_at.astimezone(UTC)
        if state.checkpoint is not None:
            entity["Checkpoint"] = state.checkpoint
        try:
            if etag is None:
                self._client.create_entity(entity)
            else:
                self._client.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError):
            return False
        except ResourceNotFoundError as exc:
            if _table_missing(exc):
                self._ensure_table()
            return False  # table just created, or the row vanished: read again
        return True

    def _state(self, job_id: str, entity: Mapping[str, Any]) -> _State:
        def corrupt(detail: str) -> NoReturn:
            raise CorruptCheckpointError(job_id, self.table, f"{STATE_ROW} entity: {detail}")

        fmt = _integer(entity.get("Format"))
        if fmt is None:
            corrupt("not an esdb-relay record (no integer Format property)")
        if fmt != FORMAT:
            corrupt(_format_mismatch(fmt))
        token = _integer(entity.get("Token"))
        version = _integer(entity.get("Version"))
        if token is None or version is None or token < 0 or version < 0:
            corrupt("Token or Version is not a non-negative integer")
        owner = entity.get("Owner")
        if owner is not None and (not isinstance(owner, str) or not owner):
            corrupt("Owner is not text")
        expires_at = None
        if owner is not None:
            expires_at = _aware(entity.get("ExpiresAt"))
            if expires_at is None:
                corrupt("ExpiresAt is not a date and time")
        checkpoint = entity.get("Checkpoint")
        if checkpoint is not None and not isinstance(checkpoint, str):
            corrupt("Checkpoint is not text")
        etag = getattr(entity, "metadata", {}).get("etag")
        return _State(owner, token, expires_at, version, checkpoint, etag)

    def _checkpoint(self, job_id: str, state: _State) -> Checkpoint:
        assert state.checkpoint is not None
        detail = None
        try:
            data = json.loads(state.checkpoint)
        except ValueError as exc:
            data, detail = None, f"Checkpoint is not JSON ({getattr(exc, 'msg', exc)})"
        if detail is None and not isinstance(data, dict):
            detail = "Checkpoint is not a JSON object"
        elif detail is None and data.get("job_id") != job_id:
            detail = "the record names another job"
        if detail is None:
            try:
                return Checkpoint.model_validate({**data, "version": state.version})
            except ValidationError as exc:
                detail = describe_invalid(exc)
        raise CorruptCheckpointError(job_id, self.table, f"{STATE_ROW} entity: {detail}")

    # --- history rows ---------------------------------------------------------------------

    def _append_slice(self, job_id: str, text: str) -> bool:
        """One attempt: bump the counter, insert the record, drop the oldest, atomically."""
        meta = self._get(job_id, HISTORY_ROW)
        if meta is None:
            last = self._newest_sequence(job_id)  # the counter was lost: continue after the rows
        else:
            last = _integer(meta.get("Last"))
            if _integer(meta.get("Format")) != FORMAT or last is None or last < 0:
                raise CorruptCheckpointError(
                    job_id, self.table, f"{HISTORY_ROW} entity: not an esdb-relay slice counter"
                )
        seq = last + 1
        counter = {
            "PartitionKey": job_id,
            "RowKey": HISTORY_ROW,
            "Format": FORMAT,
            "Last": EntityProperty(seq, EdmType.INT64),
        }
        operations: list[Any] = [
            ("create", counter)
            if meta is None
            else (
                "update",
                counter,
                {
                    "mode": UpdateMode.REPLACE,
                    "etag": meta.metadata["etag"],
                    "match_condition": MatchConditions.IfNotModified,
                },
            ),
            (
                "create",
                {
                    "PartitionKey": job_id,
                    "RowKey": _slice_key(seq),
                    "Format": FORMAT,
                    "Sequence": EntityProperty(seq, EdmType.INT64),
                    "Record": text,
                },
            ),
        ]
        if seq > self._history_limit:  # keep (seq - limit, seq]; older keys sort after this one
            old = self._slices(job_id, _slice_key(seq - self._history_limit), select=["RowKey"])
            for entity in islice(old, _MAX_PRUNE_PER_WRITE):
                operations.append(("delete", {"PartitionKey": job_id, "RowKey": entity["RowKey"]}))
        try:
            self._client.submit_transaction(operations)
        except TableTransactionError as exc:
            if _table_missing(exc):
                self._ensure_table()
                return False
            if exc.status_code in (404, 409, 412):  # another writer moved the counter or pruned
                return False
            raise
        return True

    def _newest_sequence(self, job_id: str) -> int:
        for entity in self._slices(job_id, SLICE_PREFIX, select=["RowKey"], page=1):
            return _SEQ_MAX - int(entity["RowKey"][len(SLICE_PREFIX) :])
        return 0

    def _slices(
        self, job_id: str, start: str, *, select: list[str] | None, page: int = 1000
    ) -> Iterator[Any]:
        """Slice entities from RowKey ``start`` on (newest first); none if the table is missing."""
        query = self._client.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": job_id, "lo": start, "hi": _SLICE_END},
            select=select,
            results_per_page=min(max(page, 1), 1000),
        )
        try:
            yield from query
        except ResourceNotFoundError as exc:
            if not _table_missing(exc):
                raise

    def _slice_record(self, job_id: str, entity: Mapping[str, Any]) -> SliceRecord:
        where = f"{entity.get('RowKey')} entity"
        if _integer(entity.get("Format")) != FORMAT:
            raise CorruptCheckpointError(
                job_id, self.table, f"{where}: {_format_mismatch(entity.get('Format'))}"
            )
        text = entity.get("Record")
        if not isinstance(text, str):
            raise CorruptCheckpointError(job_id, self.table, f"{where}: Record is not text")
        try:
            record = SliceRecord.model_validate_json(text)
        except ValidationError as exc:
            raise CorruptCheckpointError(
                job_id, self.table, f"{where}: {describe_invalid(exc)}"
            ) from None
        if record.job_id != job_id:
            raise CorruptCheckpointError(job_id, self.table, f"{where}: names another job")
        return record

    # --- plumbing -------------------------------------------------------------------------

    def _get(self, job_id: str, row: str) -> Any:
        try:
            return self._client.get_entity(job_id, row)
        except ResourceNotFoundError:
            return None  # no row, or no table yet: reads never create anything

    def _ensure_table(self) -> None:
        if self._table_ready:
            return
        if not self._create_table:
            raise ConfigError(
                f"Azure table {self.table!r} does not exist at {self.endpoint}",
                field="checkpoint_store",
                hint="create it (infrastructure template or `az storage table create`), or "
                "drop ?create_table=false to let esdb-relay create it on first write",
            )
        try:
            self._service.create_table(self.table)
        except ResourceExistsError as exc:
            if "TableBeingDeleted" in _code(exc):
                raise StoreUnavailableError(
                    f"Azure table {self.table!r} is being deleted and cannot be recreated yet",
                    hint="Azure needs up to a minute after a delete; retry then",
                ) from None
        except HttpResponseError as exc:
            if exc.status_code in (401, 403):
                raise ConfigError(
                    f"Azure table {self.table!r} does not exist and this identity may not "
                    "create it",
                    field="checkpoint_store",
                    hint="create the table with the infrastructure template (a role scoped to "
                    "one table needs the table to exist), or grant Storage Table Data "
                    "Contributor on the storage account",
                ) from None
            raise
        self._table_ready = True

    @contextmanager
    def _errors(self, job_id: str) -> Iterator[None]:
        """SDK failures as esdb-relay errors; SDK texts are never passed on verbatim (they may
        quote URLs with SAS tokens), and the SDK exception is not chained."""
        where = f"Azure table {self.table!r} at {self.endpoint}"
        try:
            yield
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise StoreUnavailableError(
                f"{where} cannot be reached ({_brief(exc)})",
                hint="check that the storage account endpoint is reachable from here (network "
                "rules, private endpoint, DNS, Azurite running) and retry; " + self._retry_hint,
            ) from None
        except ClientAuthenticationError as exc:
            self._auth_error(where, exc)
        except HttpResponseError as exc:
            status = exc.status_code
            if status in (401, 403):
                self._auth_error(where, exc)
            if status is not None and (status in (408, 429) or status >= 500):
                raise StoreUnavailableError(
                    f"{where} answered {status} {_code(exc)}".rstrip(),
                    hint="the storage service is busy or failing; the slice is retried with "
                    "backoff. " + self._retry_hint,
                ) from None
            raise PermanentError(
                f"{where} refused a request for job {job_id!r}: {status} {_code(exc)}".rstrip(),
                hint="this is unexpected; check the table's contents and the SDK version",
            ) from None
        except AzureError as exc:
            raise StoreUnavailableError(
                f"{where} failed ({type(exc).__name__})", hint=self._retry_hint
            ) from None

    def _auth_error(self, where: str, exc: Exception) -> NoReturn:
        raise ConfigError(
            f"{where} refused the credentials from {self._source} ({_code(exc) or 'denied'})",
            field="checkpoint_store",
            hint="with a connection string check the account name and key; with a managed "
            "identity grant it Storage Table Data Contributor on the table or the account "
            "(role assignments take a few minutes to apply)",
        ) from None


# --- registry -------------------------------------------------------------------------------


def register() -> None:
    """Make ``open_store("azuretable://TABLE")`` open this store (idempotent)."""
    register_store(SCHEME, AzureTableCheckpointStore.from_url)


# --- helpers --------------------------------------------------------------------------------


def _slice_key(seq: int) -> str:
    return f"{SLICE_PREFIX}{_SEQ_MAX - seq:0{_SEQ_DIGITS}d}"


def _integer(value: Any) -> int | None:
    if isinstance(value, EntityProperty):
        value = value.value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime) or value.tzinfo is None:
        return None
    return datetime.fromisoformat(value.isoformat()).astimezone(UTC)  # plain datetime, not SDK's


def _table_missing(exc: HttpResponseError) -> bool:
    return "TableNotFound" in _code(exc) or "TableNotFound" in str(exc)


def _code(exc: Exception) -> str:
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


def _brief(exc: Exception) -> str:
    """A short, secret-free description of a transport failure."""
    text = str(getattr(exc, "message", None) or exc)
    text = re.sub(r"\?\S*", "", text)  # query strings (SAS tokens)
    text = re.sub(r"(?i)(accountkey|sig|sharedaccesssignature)=[^;&\s]*", r"\1=***", text)
    text = re.sub(r"<[^>]* object at 0x[0-9a-f]+>:?\s*", "", text)
    text = " ".join(text.split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _utf16_bytes(text: str) -> int:
    return len(text.encode("utf-16-le"))


def _fits(text: str, what: str) -> None:
    if _utf16_bytes(text) > PROPERTY_LIMIT:
        raise PermanentError(
            f"{what} is {_utf16_bytes(text)} bytes as UTF-16, over Azure Table Storage's "
            f"{PROPERTY_LIMIT} byte property limit",
            hint="this should not happen; report it",
        )


def _record_json(record: SliceRecord) -> str:
    """The record as JSON, its ``error`` shortened if needed to fit one property."""
    text = record.model_dump_json()
    while _utf16_bytes(text) > PROPERTY_LIMIT and record.error:
        excess_chars = (_utf16_bytes(text) - PROPERTY_LIMIT) // 2 + 1
        keep = max(0, len(record.error) - excess_chars - len(_TRUNCATED) - 64)
        record = record.model_copy(update={"error": record.error[:keep] + _TRUNCATED})
        text = record.model_dump_json()
    _fits(text, "the slice record")
    return text


def _contended(job_id: str) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"the lease record of job {job_id!r} kept changing under this invocation "
        f"({_STATE_ATTEMPTS} attempts)",
        hint="several invocations are changing this job at once; retry",
    )


def _pause(attempt: int) -> None:
    time.sleep(random.uniform(0, 0.005 * 2**attempt))


def _format_mismatch(fmt: object) -> str:
    return format_mismatch(fmt, FORMAT)


def _require_key(**values: str) -> None:
    """Job ids become PartitionKeys: at most 1 KiB, none of / \\ # ? or control characters."""
    require_text(**values)
    for name, value in values.items():
        if _KEY_FORBIDDEN.search(value) or _utf16_bytes(value) > 1024:
            raise ValueError(
                f"{name} {value[:80]!r} cannot be an Azure table key (no / \\ # ? or control "
                "characters, at most 512 characters)"
            )


__all__ = [
    "FORMAT",
    "HISTORY_ROW",
    "SCHEME",
    "SLICE_PREFIX",
    "STATE_ROW",
    "AzureTableCheckpointStore",
    "parse_azuretable_url",
    "register",
]

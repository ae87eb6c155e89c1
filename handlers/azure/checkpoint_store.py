"""Azure Table Storage checkpoint store (``azuretable://TABLE``): the storage primitives under
``core.stores.base.StoreBase``, with ETag optimistic concurrency.

Layout (one partition per job, see docs/stores/azure-table.md):

- ``PartitionKey = job id, RowKey = "state"``: the lease (``Owner``, ``Token``, ``ExpiresAt``) and
  the checkpoint (``Version`` and the ``Checkpoint`` JSON, without its version).
- ``RowKey = "history"``: the slice counter ``Last``.
- ``RowKey = "slice-<inverted zero-padded sequence>"``: one slice record each, so a partition
  query returns the newest first; only the newest ``history_limit`` are kept.

core/stores/base.py reads the state entity, decides, and has the outcome written with
``If-Match: <ETag of the read>`` (``create_entity`` when there is no row yet), so a decision is
only stored if the row did not change since it was read; on a conflict it reads and decides
again. table.py holds the URL, the connection settings and the error translation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from datetime import UTC
from itertools import islice
from typing import Any, NoReturn

from core.errors import ConfigError, CorruptCheckpointError, StoreUnavailableError
from core.stores.base import (
    JobState,
    StateWrite,
    StoreBase,
    checkpoint_json,
    decode_checkpoint,
    decode_slice,
    format_mismatch,
    sequence_key,
)
from core.stores.models import HISTORY_LIMIT, Checkpoint, Clock, SliceRecord, utcnow
from handlers.azure.table import (
    FORMAT,
    PROPERTY_LIMIT,
    SCHEME,
    aware,
    code,
    endpoint_of,
    fits,
    integer,
    make_service,
    parse_azuretable_url,
    record_json,
    require_key,
    require_sdk,
    resolve_connection,
    table_missing,
    translated,
    validate_table_name,
)

try:
    from azure.core import MatchConditions
    from azure.core.exceptions import (
        HttpResponseError,
        ResourceExistsError,
        ResourceModifiedError,
        ResourceNotFoundError,
    )
    from azure.data.tables import EdmType, EntityProperty, TableTransactionError, UpdateMode
except ImportError:  # pragma: no cover - only without the azure extra (require_sdk says so)
    pass

STATE_ROW = "state"
HISTORY_ROW = "history"
SLICE_PREFIX = "slice-"
_SLICE_END = "slice."  # the first RowKey after every "slice-…" key ('.' follows '-')
_SEQ_DIGITS = 19
_SEQ_MAX = 10**_SEQ_DIGITS - 1
_MAX_PRUNE_PER_WRITE = 98  # an entity group transaction holds at most 100 operations


class AzureTableCheckpointStore(StoreBase):
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
        require_sdk()
        validate_table_name(table)
        super().__init__(now=now, history_limit=history_limit)
        self.table = table
        self._create_table = create_table
        self._table_ready = False
        connection = resolve_connection(
            connection_string=connection_string,
            connection_setting=connection_setting,
            account_url=account_url,
            credential=credential,
            environ=os.environ if environ is None else environ,
        )
        self._source = connection.source
        self._owned_credential = connection.credential if connection.owns_credential else None
        self._service = make_service(
            connection,
            {
                "retry_total": retry_total,
                "retry_backoff_factor": 0.2,
                "retry_backoff_max": 2,
                "connection_timeout": connection_timeout,
                "read_timeout": read_timeout,
            },
        )
        self._client = self._service.get_table_client(table)
        self.endpoint = endpoint_of(self._service)
        self._retry_hint = (
            f"timeouts: connection {connection_timeout:g}s, read {read_timeout:g}s, "
            f"{retry_total} retries (set ?connection_timeout=, ?read_timeout=, ?retry_total= "
            "in the store URL)"
        )

    scheme = SCHEME

    @classmethod
    def parse_url(cls, url: str) -> tuple[str, dict[str, Any]]:
        """``azuretable://TABLE[?option=value&...]``; without the SDK, ConfigError saying so."""
        require_sdk()
        return parse_azuretable_url(url)

    def __repr__(self) -> str:
        return (
            f"AzureTableCheckpointStore(table={self.table!r}, endpoint={self.endpoint!r}, "
            f"auth={self._source!r})"
        )

    def close(self) -> None:
        self._client.close()
        self._service.close()
        if self._owned_credential is not None and hasattr(self._owned_credential, "close"):
            self._owned_credential.close()

    # --- storage primitives ---------------------------------------------------------------

    def _check_key(self, job_id: str) -> None:
        require_key(job_id)

    def _read_state(self, job_id: str) -> JobState | None:
        with self._errors(job_id):
            entity = self._get(job_id, STATE_ROW)
        if entity is None:
            return None

        def corrupt(detail: str) -> NoReturn:
            raise CorruptCheckpointError(job_id, self.table, f"{STATE_ROW} entity: {detail}")

        fmt = integer(entity.get("Format"))
        if fmt is None:
            corrupt("not an esdb-relay record (no integer Format property)")
        if fmt != FORMAT:
            corrupt(format_mismatch(fmt, FORMAT))
        token = integer(entity.get("Token"))
        version = integer(entity.get("Version"))
        if token is None or version is None or token < 0 or version < 0:
            corrupt("Token or Version is not a non-negative integer")
        owner = entity.get("Owner")
        if owner is not None and (not isinstance(owner, str) or not owner):
            corrupt("Owner is not text")
        expires_at = None
        if owner is not None:
            expires_at = aware(entity.get("ExpiresAt"))
            if expires_at is None:
                corrupt("ExpiresAt is not a date and time")
        checkpoint = entity.get("Checkpoint")
        if checkpoint is not None and not isinstance(checkpoint, str):
            corrupt("Checkpoint is not text")
        etag = getattr(entity, "metadata", {}).get("etag")
        return JobState(owner, token, expires_at, version, checkpoint, etag)

    def _write_state(self, job_id: str, write: StateWrite, read: JobState | None) -> bool:
        """Create (``read`` None) or replace the state entity if unchanged since read (ETag)."""
        entity: dict[str, Any] = {
            "PartitionKey": job_id,
            "RowKey": STATE_ROW,
            "Format": FORMAT,
            "Token": EntityProperty(write.token, EdmType.INT64),
            "Version": EntityProperty(write.version, EdmType.INT64),
        }
        if write.owner is not None:
            assert write.expires_at is not None
            entity["Owner"] = write.owner
            entity["ExpiresAt"] = write.expires_at.astimezone(UTC)
        if write.checkpoint is not None:
            entity["Checkpoint"] = checkpoint_json(write.checkpoint)
            fits(entity["Checkpoint"], "the checkpoint")
        elif read is not None and read.checkpoint is not None:
            entity["Checkpoint"] = read.checkpoint  # a replace keeps what it does not change
        with self._errors(job_id):
            try:
                if read is None:
                    self._client.create_entity(entity)
                else:
                    self._client.update_entity(
                        entity,
                        mode=UpdateMode.REPLACE,
                        etag=read.revision,
                        match_condition=MatchConditions.IfNotModified,
                    )
            except (ResourceExistsError, ResourceModifiedError):
                return False
            except ResourceNotFoundError as exc:
                if table_missing(exc):
                    self._ensure_table()
                return False  # table just created, or the row vanished: read again
        return True

    def _decode_checkpoint(self, job_id: str, state: JobState) -> Checkpoint:
        return decode_checkpoint(
            job_id,
            self.table,
            state.checkpoint,
            state.version,
            field="Checkpoint",
            prefix=f"{STATE_ROW} entity: ",
        )

    def _append_slice(self, job_id: str, record: SliceRecord) -> bool:
        """One attempt: bump the counter, insert the record, drop the oldest, atomically."""
        text = record_json(record)
        with self._errors(job_id):
            meta = self._get(job_id, HISTORY_ROW)
            if meta is None:  # the counter was lost (or never written): continue after the rows
                last = self._newest_sequence(job_id)
            else:
                last = integer(meta.get("Last"))
                if integer(meta.get("Format")) != FORMAT or last is None or last < 0:
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
            slice_entity = {
                "PartitionKey": job_id,
                "RowKey": _slice_key(seq),
                "Format": FORMAT,
                "Sequence": EntityProperty(seq, EdmType.INT64),
                "Record": text,
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
                ("create", slice_entity),
            ]
            if seq > self._history_limit:  # keep (seq - limit, seq]; older keys sort after it
                old = self._slices(job_id, _slice_key(seq - self._history_limit), ["RowKey"])
                for entity in islice(old, _MAX_PRUNE_PER_WRITE):
                    operations.append(
                        ("delete", {"PartitionKey": job_id, "RowKey": entity["RowKey"]})
                    )
            try:
                self._client.submit_transaction(operations)
            except TableTransactionError as exc:
                if table_missing(exc):
                    self._ensure_table()
                    return False
                if exc.status_code in (404, 409, 412):  # another writer moved the counter
                    return False
                raise
        return True

    def _newest_slices(self, job_id: str, limit: int) -> list[SliceRecord]:
        with self._errors(job_id):
            entities = list(islice(self._slices(job_id, SLICE_PREFIX, None, page=limit), limit))
        return [self._slice_record(job_id, entity) for entity in entities]

    def _contended(self, job_id: str, *, history: bool) -> Exception:
        if not history:
            return super()._contended(job_id, history=False)
        return StoreUnavailableError(
            f"the slice history of job {job_id!r} in Azure table {self.table!r} kept changing "
            f"under this writer ({self.history_attempts} attempts)",
            hint="many invocations are recording slices of one job at once; retry",
        )

    # --- internals ------------------------------------------------------------------------

    def _newest_sequence(self, job_id: str) -> int:
        for entity in self._slices(job_id, SLICE_PREFIX, ["RowKey"], page=1):
            return _SEQ_MAX - int(entity["RowKey"][len(SLICE_PREFIX) :])
        return 0

    def _slices(
        self, job_id: str, start: str, select: list[str] | None, *, page: int = 1000
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
            if not table_missing(exc):
                raise

    def _slice_record(self, job_id: str, entity: Mapping[str, Any]) -> SliceRecord:
        where = f"{entity.get('RowKey')} entity: "
        fmt = entity.get("Format")
        if integer(fmt) != FORMAT:
            raise CorruptCheckpointError(job_id, self.table, where + format_mismatch(fmt, FORMAT))
        text = entity.get("Record")
        if not isinstance(text, str):
            raise CorruptCheckpointError(job_id, self.table, where + "Record is not text")
        return decode_slice(job_id, self.table, text, prefix=where)

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
            if "TableBeingDeleted" in code(exc):
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

    def _errors(self, job_id: str) -> Any:
        where = f"Azure table {self.table!r} at {self.endpoint}"
        return translated(where, job_id, self._source, self._retry_hint)


def _slice_key(seq: int) -> str:
    return sequence_key(seq, _SEQ_DIGITS, prefix=SLICE_PREFIX, newest_first=True)


register = AzureTableCheckpointStore.register  # open_store opens azuretable:// URLs from then on


__all__ = [
    "FORMAT",
    "HISTORY_ROW",
    "PROPERTY_LIMIT",
    "SCHEME",
    "SLICE_PREFIX",
    "STATE_ROW",
    "AzureTableCheckpointStore",
    "parse_azuretable_url",
    "register",
]

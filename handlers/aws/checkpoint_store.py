"""DynamoDB checkpoint store: the AWS storage primitives under ``core.stores.base.StoreBase``.

One table, partition key ``pk`` and sort key ``sk`` (both strings):

- ``pk=job#<id>, sk=state``: the job record — lease (``owner``, ``token``, ``lease_expires_us``)
  and checkpoint (``version``, ``checkpoint`` as JSON). A change is one ``UpdateItem`` whose
  condition is the record as it was read (the compare-and-swap), so none can be half done.
- ``pk=job#<id>, sk=history``: the job's slice counter (``seq``).
- ``pk=job#<id>, sk=slice#<seq, 20 digits>``: one slice record each, with a ``ttl`` attribute
  (epoch seconds) for DynamoDB's Time to Live. The newest ``HISTORY_LIMIT`` are kept; each new
  one deletes the one ``HISTORY_LIMIT`` behind it, and TTL removes any a crash left behind.

The layout, the condition expressions and the IAM actions are in docs/stores/dynamodb.md; the
URL, the client, the table and the error translation in dynamodb.py.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from core.errors import CorruptCheckpointError
from core.stores.base import (
    JobState,
    StateWrite,
    StoreBase,
    checkpoint_json,
    decode_checkpoint,
    decode_slice,
    sequence_key,
)
from core.stores.models import HISTORY_LIMIT, Checkpoint, Clock, SliceRecord, utcnow
from handlers.aws.dynamodb import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_READ_TIMEOUT,
    FORMAT,
    SCHEME,
    TTL_ATTRIBUTE,
    ConditionFailed,
    check_format,
    create_table,
    describe,
    from_us,
    int_attr,
    make_client,
    n,
    parse_dynamodb_url,
    s,
    safe_endpoint,
    str_attr,
    to_us,
    translated,
    validate_table_name,
)

STATE_SK = "state"
COUNTER_SK = "history"
SLICE_PREFIX = "slice#"
SEQ_DIGITS = 20  # zero-padded so that string order is numeric order (fits any 64-bit count)
HISTORY_TTL_DAYS = 30.0

# Every attribute goes through ExpressionAttributeNames: format, owner, token, ttl, ... are
# DynamoDB reserved words.
_NAMES = {
    "#pk": "pk",
    "#format": "format",
    "#job": "job_id",
    "#owner": "owner",
    "#token": "token",
    "#expires": "lease_expires_us",
    "#version": "version",
    "#checkpoint": "checkpoint",
    "#seq": "seq",
}


class DynamoDbCheckpointStore(StoreBase):
    """A ``CheckpointStore`` in one DynamoDB table.

    Safe to share between threads (boto3 clients are); separate store objects, containers or
    machines coordinate through DynamoDB's conditional writes.
    """

    def __init__(
        self,
        table: str,
        *,
        now: Clock = utcnow,
        client: Any | None = None,
        session: Any | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        history_limit: int = HISTORY_LIMIT,
        history_ttl_days: float = HISTORY_TTL_DAYS,
    ) -> None:
        validate_table_name(table)
        super().__init__(now=now, history_limit=history_limit)
        if not history_ttl_days > 0:
            raise ValueError("history_ttl_days must be positive")
        self.table = table
        self._history_ttl = timedelta(days=history_ttl_days)
        self._lock = threading.Lock()
        self._owns_client = client is None
        if client is None:
            client = make_client(
                session=session,
                region=region,
                endpoint_url=endpoint_url,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_attempts=max_attempts,
            )
        self._client = client
        self.region: str | None = getattr(client.meta, "region_name", None)
        self.endpoint: str | None = safe_endpoint(getattr(client.meta, "endpoint_url", None))
        self._closed = False

    scheme = SCHEME
    parse_url = staticmethod(parse_dynamodb_url)  # dynamodb://TABLE?region=...&endpoint_url=...

    def __repr__(self) -> str:
        return f"DynamoDbCheckpointStore({self.table!r}, region={self.region!r})"

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._owns_client:
                self._client.close()

    # --- storage primitives ---------------------------------------------------------------

    def _read_state(self, job_id: str) -> JobState | None:
        with self._errors("GetItem"):
            found = self._client.get_item(
                TableName=self.table, Key=_key(job_id, STATE_SK), ConsistentRead=True
            )
        item = found.get("Item")
        if item is None:
            return None
        table = self.table
        check_format(job_id, table, item)
        owner = str_attr(job_id, table, item, "owner")
        token = int_attr(job_id, table, item, "token")
        version = int_attr(job_id, table, item, "version")
        expires_us = None if owner is None else int_attr(job_id, table, item, "lease_expires_us")
        expires_at = None if expires_us is None else from_us(expires_us)
        checkpoint = str_attr(job_id, table, item, "checkpoint")
        return JobState(owner, token, expires_at, version, checkpoint, expires_us)

    def _write_state(self, job_id: str, write: StateWrite, read: JobState | None) -> bool:
        values: dict[str, Any] = {
            ":format": n(FORMAT),
            ":job": s(job_id),
            ":token": n(write.token),
            ":version": n(write.version),
        }
        sets = ["#format = :format", "#job = :job", "#token = :token", "#version = :version"]
        update = ""
        if write.owner is not None:
            assert write.expires_at is not None
            sets += ["#owner = :owner", "#expires = :expires"]
            values |= {":owner": s(write.owner), ":expires": n(to_us(write.expires_at))}
        else:
            update = " REMOVE #owner, #expires"
        if write.checkpoint is not None:
            sets.append("#checkpoint = :checkpoint")
            values[":checkpoint"] = s(checkpoint_json(write.checkpoint))
        if read is None:
            condition = "attribute_not_exists(#pk)"
        else:  # the record as read: the fields every decision is made on
            condition = "#format = :format AND #token = :was_token AND #version = :was_version"
            values |= {":was_token": n(read.token), ":was_version": n(read.version)}
            if read.owner is None:
                condition += " AND attribute_not_exists(#owner)"
            else:
                condition += " AND #owner = :was_owner AND #expires = :was_expires"
                values |= {":was_owner": s(read.owner), ":was_expires": n(read.revision)}
        try:
            self._update(job_id, STATE_SK, "SET " + ", ".join(sets) + update, condition, values)
        except ConditionFailed:
            return False
        return True

    def _decode_checkpoint(self, job_id: str, state: JobState) -> Checkpoint:
        return decode_checkpoint(job_id, self.table, state.checkpoint, state.version)

    def _append_slice(self, job_id: str, record: SliceRecord) -> bool:
        try:
            counter = self._update(
                job_id,
                COUNTER_SK,
                "SET #format = :format, #job = :job ADD #seq :one",
                "attribute_not_exists(#pk) OR "
                "(#format = :format AND attribute_type(#seq, :number))",
                {":format": n(FORMAT), ":job": s(job_id), ":number": s("N"), ":one": n(1)},
                return_new=True,
            )
        except ConditionFailed as failed:
            raise CorruptCheckpointError(
                job_id,
                self.table,
                f"the history counter is not esdb-relay's ({describe(failed.item)})",
            ) from None
        seq = int_attr(job_id, self.table, counter, "seq")
        expires = int((datetime.now(UTC) + self._history_ttl).timestamp())  # TTL runs on real time
        with self._errors("PutItem"):
            self._client.put_item(
                TableName=self.table,
                Item={
                    **_key(job_id, _slice_sk(seq)),
                    "format": n(FORMAT),
                    "job_id": s(job_id),
                    "record": s(record.model_dump_json()),
                    TTL_ATTRIBUTE: n(expires),
                },
            )
        if seq > self._history_limit:  # the one record that just fell out of the window
            with self._errors("DeleteItem"):
                self._client.delete_item(
                    TableName=self.table, Key=_key(job_id, _slice_sk(seq - self._history_limit))
                )
        return True

    def _newest_slices(self, job_id: str, limit: int) -> list[SliceRecord]:
        items: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while len(items) < limit:
            query: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
                "ExpressionAttributeNames": {"#pk": "pk", "#sk": "sk"},
                "ExpressionAttributeValues": {":pk": s(_pk(job_id)), ":prefix": s(SLICE_PREFIX)},
                "ScanIndexForward": False,  # newest first
                "Limit": limit - len(items),
                "ConsistentRead": True,
            }
            if start:
                query["ExclusiveStartKey"] = start
            with self._errors("Query"):
                page = self._client.query(**query)
            items.extend(page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        return [self._slice(job_id, item) for item in items[:limit]]

    # --- internals ------------------------------------------------------------------------

    def _slice(self, job_id: str, item: Mapping[str, Any]) -> SliceRecord:
        check_format(job_id, self.table, item)
        text = str_attr(job_id, self.table, item, "record")
        if text is None:
            raise CorruptCheckpointError(job_id, self.table, "slice record has no record attribute")
        return decode_slice(job_id, self.table, text)

    def _update(
        self,
        job_id: str,
        sk: str,
        update: str,
        condition: str,
        values: dict[str, Any],
        *,
        return_new: bool = False,
    ) -> dict[str, Any]:
        """One conditional UpdateItem; ``ConditionFailed`` carries the record it failed on."""
        expression = f"{update} {condition}"
        with self._errors("UpdateItem"):
            return self._client.update_item(
                TableName=self.table,
                Key=_key(job_id, sk),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={k: v for k, v in _NAMES.items() if k in expression},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW" if return_new else "NONE",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ).get("Attributes", {})

    def _errors(self, action: str) -> Any:
        return translated(self.table, self.region, self.endpoint, action)


def _pk(job_id: str) -> str:
    return f"job#{job_id}"


def _key(job_id: str, sk: str) -> dict[str, Any]:
    return {"pk": s(_pk(job_id)), "sk": s(sk)}


def _slice_sk(seq: int) -> str:
    return sequence_key(seq, SEQ_DIGITS, prefix=SLICE_PREFIX)


register = DynamoDbCheckpointStore.register  # open_store opens dynamodb:// URLs from then on


__all__ = [
    "FORMAT",
    "HISTORY_TTL_DAYS",
    "SCHEME",
    "TTL_ATTRIBUTE",
    "DynamoDbCheckpointStore",
    "create_table",
    "parse_dynamodb_url",
    "register",
    "validate_table_name",
]

"""DynamoDB checkpoint store: the AWS implementation of ``core.checkpoint.CheckpointStore``.

One table, partition key ``pk`` and sort key ``sk`` (both strings):

- ``pk=job#<id>, sk=state``: the job record — lease (``owner``, ``token``, ``lease_expires_us``)
  and checkpoint (``version``, ``checkpoint`` as JSON). Every change to it is one conditional
  ``UpdateItem``, so no write needs a transaction and none can be half done.
- ``pk=job#<id>, sk=history``: the job's slice counter (``seq``).
- ``pk=job#<id>, sk=slice#<seq, 20 digits>``: one slice record each, with a ``ttl`` attribute
  (epoch seconds) for DynamoDB's Time to Live. The newest ``HISTORY_LIMIT`` are kept; each new
  one deletes the one ``HISTORY_LIMIT`` behind it, and TTL removes any a crash left behind.

The layout, the condition expressions and the IAM actions are in docs/stores/dynamodb.md.
boto3 is imported here only: core never imports a cloud SDK.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
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
    LeaseLostError,
    PermanentError,
    StoreUnavailableError,
)
from core.stores.lease_rules import (
    checkpoint_json,
    committed,
    describe_invalid,
    held_by_another,
    history_window,
    lease_expiry,
    lease_lost,
    renewed,
    require_same_job,
    require_text,
    require_ttl,
    slice_job_id,
    version_moved,
)

SCHEME = "dynamodb"
FORMAT = 1
"""Record format written by this version; records of another format are refused, not guessed."""

STATE_SK = "state"
COUNTER_SK = "history"
SLICE_PREFIX = "slice#"
SEQ_DIGITS = 20  # zero-padded so that string order is numeric order (fits any 64-bit count)
HISTORY_TTL_DAYS = 30.0
TTL_ATTRIBUTE = "ttl"  # epoch seconds on slice rows; the table's Time to Live attribute

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_MAX_ATTEMPTS = 4

# ClientError codes that mean "try again later".
TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "TransactionConflictException",
        "TransactionInProgressException",
        "LimitExceededException",
        "ExpiredTokenException",  # temporary credentials rotate; the next attempt gets new ones
        "RequestExpired",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "MissingAuthenticationTokenException",
        "IncompleteSignatureException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    }
)
_CONDITION_FAILED = "ConditionalCheckFailedException"

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
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TABLE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_URL_HINT = (
    "use dynamodb://TABLE, optionally with ?region=REGION&endpoint_url=URL "
    "(e.g. dynamodb://esdb-relay-checkpoints?region=eu-west-1)"
)
_URL_OPTIONS = {"region", "endpoint_url"}


# --- URL ------------------------------------------------------------------------------------


def parse_dynamodb_url(url: str) -> tuple[str, dict[str, str]]:
    """``dynamodb://TABLE?region=R&endpoint_url=U`` → ``("TABLE", {"region": R, ...})``.

    The store URL names the table only; the job id comes from the job configuration.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != SCHEME:
        raise ConfigError("not a dynamodb:// URL", field="checkpoint_store", hint=_URL_HINT)
    rest, _, query = rest.partition("?")
    table = rest[:-1] if rest.endswith("/") else rest
    if not table:
        raise ConfigError("dynamodb URL names no table", field="checkpoint_store", hint=_URL_HINT)
    if "/" in table:
        raise ConfigError(
            "dynamodb URL has a path after the table name",
            field="checkpoint_store",
            hint="the URL names the table only (dynamodb://TABLE); the job id comes from the job "
            "configuration (job_id)",
        )
    validate_table_name(table)
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _URL_OPTIONS:
            raise ConfigError(
                f"unknown dynamodb store option {key!r}",
                field="checkpoint_store",
                hint="the options are ?region=REGION and ?endpoint_url=URL; credentials come "
                "from the usual AWS environment, never from the URL",
            )
        if not value:
            raise ConfigError(
                f"dynamodb store option {key!r} is empty",
                field="checkpoint_store",
                hint=_URL_HINT,
            )
        options[key] = value
    return table, options


def validate_table_name(table: str) -> None:
    if not 3 <= len(table) <= 255 or not set(table) <= _TABLE_NAME_CHARS:
        raise ConfigError(
            f"{table!r} is not a valid DynamoDB table name",
            field="checkpoint_store",
            hint="table names are 3-255 characters of letters, digits, '_', '-' and '.'",
        )


def _safe_endpoint(endpoint: str | None) -> str | None:
    """The endpoint without user info, query or fragment (nothing secret goes into messages)."""
    if not endpoint:
        return None
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


# --- the store ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _JobRow:
    owner: str | None
    token: int
    expires_at: datetime | None
    version: int
    checkpoint: str | None


class _ConditionFailed(Exception):
    """A conditional write was refused; ``item`` is the record the condition saw (or None)."""

    def __init__(self, item: dict[str, Any] | None) -> None:
        super().__init__("condition failed")
        self.item = item


class DynamoDbCheckpointStore(ClosingStore):
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
        if not 1 <= history_limit <= HISTORY_LIMIT:
            raise ValueError(f"history_limit must be between 1 and {HISTORY_LIMIT}")
        if not history_ttl_days > 0:
            raise ValueError("history_ttl_days must be positive")
        self.table = table
        self._now = now
        self._history_limit = history_limit
        self._history_ttl = timedelta(days=history_ttl_days)
        self._lock = threading.Lock()
        self._owns_client = client is None
        if client is None:
            client = _make_client(
                session=session,
                region=region,
                endpoint_url=endpoint_url,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_attempts=max_attempts,
            )
        self._client = client
        self.region: str | None = getattr(client.meta, "region_name", None)
        self.endpoint: str | None = _safe_endpoint(getattr(client.meta, "endpoint_url", None))
        self._closed = False

    @classmethod
    def from_url(cls, url: str, *, now: Clock = utcnow, **options: Any) -> DynamoDbCheckpointStore:
        """Open ``dynamodb://TABLE[?region=...&endpoint_url=...]``. Keyword options (client,
        session, timeouts, ...) are the caller's defaults: the URL's region and endpoint_url,
        which are the user's configuration, win over them."""
        table, url_options = parse_dynamodb_url(url)
        return cls(table, now=now, **{**options, **url_options})

    def __repr__(self) -> str:
        return f"DynamoDbCheckpointStore({self.table!r}, region={self.region!r})"

    # --- protocol -------------------------------------------------------------------------

    def load(self, job_id: str) -> Checkpoint | None:
        item = self._get_state(job_id)
        if item is None:
            return None
        row = _parse_state(job_id, self.table, item)
        if row.checkpoint is None:
            return None
        return _parse_checkpoint(job_id, self.table, row)

    def acquire(self, job_id: str, owner: str, ttl_seconds: float) -> Lease:
        require_text(job_id=job_id, owner=owner)
        require_ttl(ttl_seconds)
        now = self._now()
        expires_at = lease_expiry(now, ttl_seconds)
        try:
            attributes = self._update(
                job_id,
                # Free when: no record yet, or an esdb-relay record whose lease was released,
                # has expired, or is this owner's (re-acquiring fences the owner's old handle).
                condition=(
                    "attribute_not_exists(#pk) OR (#format = :format AND "
                    "attribute_type(#token, :number) AND attribute_type(#version, :number) AND "
                    "(attribute_not_exists(#owner) OR (attribute_type(#owner, :string) AND "
                    "attribute_type(#expires, :number) AND (#owner = :owner OR #expires <= :now))))"
                ),
                update=(
                    "SET #format = :format, #job = :job, #owner = :owner, #expires = :expires, "
                    "#version = if_not_exists(#version, :zero) ADD #token :one"
                ),
                values={
                    ":format": _n(FORMAT),
                    ":job": {"S": job_id},
                    ":owner": {"S": owner},
                    ":expires": _n(_to_us(expires_at)),
                    ":now": _n(_to_us(now)),
                    ":number": {"S": "N"},
                    ":string": {"S": "S"},
                    ":zero": _n(0),
                    ":one": _n(1),
                },
                return_new=True,
            )
        except _ConditionFailed as failed:
            if failed.item is None:  # only if the record was deleted while we were refused
                raise LeaseLostError(job_id, "the job record changed during the acquire") from None
            row = _parse_state(job_id, self.table, failed.item)
            raise held_by_another(job_id, row.owner, row.expires_at) from None
        token = _int_attr(job_id, self.table, attributes, "token")
        return Lease(job_id=job_id, owner=owner, token=token, expires_at=expires_at)

    def renew(self, lease: Lease, ttl_seconds: float) -> Lease:
        require_ttl(ttl_seconds)
        now = self._now()
        new = renewed(lease, now, ttl_seconds)
        try:
            self._update(
                lease.job_id,
                condition=_HELD,
                update="SET #expires = :expires",
                values={**_held_values(lease, now), ":expires": _n(_to_us(new.expires_at))},
            )
        except _ConditionFailed as failed:
            raise self._lost(lease, failed.item, now) from None
        return new

    def commit(self, lease: Lease, checkpoint: Checkpoint) -> Checkpoint:
        require_same_job(lease, checkpoint)
        now = self._now()
        stored = committed(checkpoint, now)
        try:
            self._update(
                lease.job_id,
                condition=f"{_HELD} AND #version = :version",
                update="SET #checkpoint = :checkpoint, #version = :next",
                values={
                    **_held_values(lease, now),
                    ":version": _n(checkpoint.version),
                    ":next": _n(stored.version),
                    ":checkpoint": {"S": checkpoint_json(stored)},
                },
            )
        except _ConditionFailed as failed:
            raise self._lost(lease, failed.item, now, version=checkpoint.version) from None
        return stored

    def release(self, lease: Lease) -> bool:
        try:
            self._update(
                lease.job_id,
                condition="#format = :format AND #owner = :owner AND #token = :token",
                update="REMOVE #owner, #expires",
                values={
                    ":format": _n(FORMAT),
                    ":owner": {"S": lease.owner},
                    ":token": _n(lease.token),
                },
                want_item=False,
            )
        except _ConditionFailed:
            return False
        return True

    def record_slice(self, lease_or_job_id: Lease | str, record: SliceRecord) -> None:
        job_id = slice_job_id(lease_or_job_id, record)
        try:
            counter = self._update(
                job_id,
                sk=COUNTER_SK,
                condition="attribute_not_exists(#pk) OR "
                "(#format = :format AND attribute_type(#seq, :number))",
                update="SET #format = :format, #job = :job ADD #seq :one",
                values={
                    ":format": _n(FORMAT),
                    ":job": {"S": job_id},
                    ":number": {"S": "N"},
                    ":one": _n(1),
                },
                return_new=True,
            )
        except _ConditionFailed as failed:
            raise CorruptCheckpointError(
                job_id,
                self.table,
                f"the history counter is not esdb-relay's ({_describe(failed.item)})",
            ) from None
        seq = _int_attr(job_id, self.table, counter, "seq")
        expires = int((datetime.now(UTC) + self._history_ttl).timestamp())  # TTL runs on real time
        with self._errors(job_id, "PutItem"):
            self._client.put_item(
                TableName=self.table,
                Item={
                    **_key(job_id, _slice_sk(seq)),
                    "format": _n(FORMAT),
                    "job_id": {"S": job_id},
                    "record": {"S": record.model_dump_json()},
                    TTL_ATTRIBUTE: _n(expires),
                },
            )
        if seq > self._history_limit:
            with self._errors(job_id, "DeleteItem"):
                self._client.delete_item(
                    TableName=self.table, Key=_key(job_id, _slice_sk(seq - self._history_limit))
                )

    def history(self, job_id: str, limit: int = 20) -> list[SliceRecord]:
        limit = history_window(limit, self._history_limit)
        items: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while len(items) < limit:
            query: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
                "ExpressionAttributeNames": {"#pk": "pk", "#sk": "sk"},
                "ExpressionAttributeValues": {
                    ":pk": {"S": _pk(job_id)},
                    ":prefix": {"S": SLICE_PREFIX},
                },
                "ScanIndexForward": False,  # newest first
                "Limit": limit - len(items),
                "ConsistentRead": True,
            }
            if start:
                query["ExclusiveStartKey"] = start
            with self._errors(job_id, "Query"):
                page = self._client.query(**query)
            items.extend(page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        return [_parse_slice(job_id, self.table, item) for item in items[:limit]]

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._owns_client:
                self._client.close()

    # --- internals ------------------------------------------------------------------------

    def _get_state(self, job_id: str) -> dict[str, Any] | None:
        with self._errors(job_id, "GetItem"):
            found = self._client.get_item(
                TableName=self.table, Key=_key(job_id, STATE_SK), ConsistentRead=True
            )
        return found.get("Item")

    def _update(
        self,
        job_id: str,
        *,
        condition: str,
        update: str,
        values: dict[str, Any],
        sk: str = STATE_SK,
        return_new: bool = False,
        want_item: bool = True,
    ) -> dict[str, Any]:
        """One conditional UpdateItem; ``_ConditionFailed`` carries the record it failed on."""
        expression = f"{update} {condition}"
        request: dict[str, Any] = {
            "TableName": self.table,
            "Key": _key(job_id, sk),
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {k: v for k, v in _NAMES.items() if k in expression},
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW" if return_new else "NONE",
        }
        if want_item:
            request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            with self._errors(job_id, "UpdateItem"):
                return self._client.update_item(**request).get("Attributes", {})
        except _ConditionFailed as failed:
            if want_item and failed.item is None and sk == STATE_SK:
                # The failure response carries the old item; an old service or emulator might
                # not send it, so read it (only used to explain the failure).
                failed.item = self._get_state(job_id)
            raise

    def _lost(
        self,
        lease: Lease,
        item: dict[str, Any] | None,
        now: datetime,
        *,
        version: int | None = None,
    ) -> LeaseLostError:
        """Why a write under ``lease`` was refused, from the record the condition saw."""
        row = None if item is None else _parse_state(lease.job_id, self.table, item)
        lost = lease_lost(lease, row, now)
        if lost is not None:
            return lost
        assert row is not None  # held: the condition failed on the version
        return version_moved(lease.job_id, version, row.version)

    @contextmanager
    def _errors(self, job_id: str, action: str) -> Iterator[None]:
        """botocore failures → the esdb-relay error hierarchy (never with credentials)."""
        where = f"DynamoDB table {self.table!r}" + (f" in {self.region}" if self.region else "")
        if self.endpoint:
            where += f" at {self.endpoint}"
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if code == _CONDITION_FAILED:
                raise _ConditionFailed(exc.response.get("Item")) from None
            if code == "ResourceNotFoundException":
                raise ConfigError(
                    f"{where} does not exist",
                    field="checkpoint_store",
                    hint=f"create it (keys pk and sk, both strings, TTL on attribute ttl): "
                    f"deploy the stack in infra/aws, or run `aws dynamodb create-table "
                    f"--table-name {self.table} --attribute-definitions "
                    f"AttributeName=pk,AttributeType=S AttributeName=sk,AttributeType=S "
                    f"--key-schema AttributeName=pk,KeyType=HASH AttributeName=sk,KeyType=RANGE "
                    f"--billing-mode PAY_PER_REQUEST` (see docs/stores/dynamodb.md); or fix the "
                    f"table name or region in the store URL",
                ) from None
            if code in TRANSIENT_CODES or status >= 500:
                raise StoreUnavailableError(
                    f"{where} is unavailable: {action} failed with {code or status}",
                    hint="DynamoDB is throttling or briefly unavailable; the slice is retried "
                    "with backoff. If throttling persists, switch the table to on-demand "
                    "(PAY_PER_REQUEST) or raise its provisioned capacity",
                ) from None
            if code == "AccessDeniedException":
                raise ConfigError(
                    f"{where}: {action} is not allowed for this function's AWS identity",
                    field="checkpoint_store",
                    hint=f"grant dynamodb:{action} on the table (docs/stores/dynamodb.md lists "
                    f"the IAM actions the store needs)",
                ) from None
            if code in CREDENTIAL_CODES:
                raise ConfigError(
                    f"{where}: AWS rejected the credentials ({code})",
                    field="checkpoint_store",
                    hint="check the function's role or the AWS_* credentials in the environment, "
                    "and that the region is right",
                ) from None
            raise PermanentError(
                f"{where}: {action} failed with {code or status}",
                hint="this request is refused as it is; check the table's key schema (pk and sk, "
                "both strings) against docs/stores/dynamodb.md",
            ) from None
        except (NoCredentialsError, PartialCredentialsError):
            raise ConfigError(
                f"{where}: no AWS credentials found",
                field="checkpoint_store",
                hint="run under an IAM role, or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
                "AWS_PROFILE",
            ) from None
        except (BotoConnectionError, HTTPClientError, CredentialRetrievalError) as exc:
            raise StoreUnavailableError(
                f"{where} cannot be reached: {action} failed ({type(exc).__name__})",
                hint="check the network path to DynamoDB (VPC gateway endpoint or NAT, security "
                "groups), the region and endpoint_url in the store URL or AWS_ENDPOINT_URL; the "
                "slice is retried with backoff",
            ) from None
        except BotoCoreError as exc:  # anything else botocore refuses is permanent
            raise PermanentError(
                f"{where}: {action} failed ({type(exc).__name__})",
                hint="check the store URL and the AWS settings in the environment",
            ) from None


# The fencing condition: the lease in the record is still the caller's (owner and token) and
# has not expired by the caller's clock.
_HELD = "#format = :format AND #owner = :owner AND #token = :token AND #expires > :now"


def _held_values(lease: Lease, now: datetime) -> dict[str, Any]:
    return {
        ":format": _n(FORMAT),
        ":owner": {"S": lease.owner},
        ":token": _n(lease.token),
        ":now": _n(_to_us(now)),
    }


# --- client ---------------------------------------------------------------------------------


def _make_client(
    *,
    session: Any | None,
    region: str | None,
    endpoint_url: str | None,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
) -> Any:
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    config = Config(
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    # A session per store: boto3's default session is not safe to share between threads.
    session = session or boto3.session.Session()
    # botocore reads AWS_DEFAULT_REGION (and profiles) only; Lambda also sets AWS_REGION.
    region = region or session.region_name or os.environ.get("AWS_REGION") or None
    try:
        return session.client(
            "dynamodb", region_name=region, endpoint_url=endpoint_url, config=config
        )
    except NoRegionError:
        raise ConfigError(
            "no AWS region for the DynamoDB checkpoint store",
            field="checkpoint_store",
            hint="set AWS_REGION (Lambda sets it), or add ?region=REGION to the dynamodb:// URL",
        ) from None
    except ValueError as exc:  # e.g. an endpoint_url that is not a URL
        raise ConfigError(
            f"invalid DynamoDB client setting: {exc}",
            field="checkpoint_store",
            hint=_URL_HINT,
        ) from None


def create_table(client: Any, name: str) -> None:
    """Create the checkpoint table (on-demand capacity, TTL on ``ttl``) and wait until it is
    active. An existing table is kept; TTL is switched on if it is off."""
    validate_table_name(name)
    try:
        client.create_table(
            TableName=name,
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            BillingMode="PAY_PER_REQUEST",  # encrypted at rest by default (AWS owned key)
            Tags=[{"Key": "app", "Value": "esdb-relay"}],
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
    client.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
    )
    ttl = client.describe_time_to_live(TableName=name).get("TimeToLiveDescription", {})
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )


# --- records --------------------------------------------------------------------------------


def _pk(job_id: str) -> str:
    return f"job#{job_id}"


def _key(job_id: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": _pk(job_id)}, "sk": {"S": sk}}


def _slice_sk(seq: int) -> str:
    return f"{SLICE_PREFIX}{seq:0{SEQ_DIGITS}d}"


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _to_us(moment: datetime) -> int:
    """Microseconds since the epoch: exact, and comparable inside condition expressions."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _describe(item: Mapping[str, Any] | None) -> str:
    if not item:
        return "no record"
    return "attributes " + ", ".join(sorted(item))


def _int_attr(job_id: str, table: str, item: Mapping[str, Any], name: str) -> int:
    value = item.get(name)
    if not isinstance(value, Mapping) or set(value) != {"N"}:
        raise CorruptCheckpointError(job_id, table, f"{name} is not a number")
    try:
        number = int(value["N"])
    except (TypeError, ValueError):
        raise CorruptCheckpointError(job_id, table, f"{name} is not an integer") from None
    if number < 0:
        raise CorruptCheckpointError(job_id, table, f"{name} is negative")
    return number


def _str_attr(job_id: str, table: str, item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != {"S"} or not isinstance(value["S"], str):
        raise CorruptCheckpointError(job_id, table, f"{name} is not a string")
    return value["S"]


def _check_format(job_id: str, table: str, item: Mapping[str, Any]) -> None:
    if "format" not in item:
        raise CorruptCheckpointError(
            job_id, table, f"not an esdb-relay record (no format attribute; {_describe(item)})"
        )
    fmt = item["format"]
    if fmt != _n(FORMAT):
        shown = fmt.get("N", fmt) if isinstance(fmt, Mapping) else fmt
        raise CorruptCheckpointError(
            job_id, table, f"record format {shown!r}, this version of esdb-relay reads {FORMAT}"
        )
    if _str_attr(job_id, table, item, "job_id") not in (None, job_id):
        raise CorruptCheckpointError(job_id, table, "the record names another job")


def _parse_state(job_id: str, table: str, item: Mapping[str, Any] | None) -> _JobRow:
    if item is None:
        raise CorruptCheckpointError(job_id, table, "the record vanished during the write")
    _check_format(job_id, table, item)
    owner = _str_attr(job_id, table, item, "owner")
    token = _int_attr(job_id, table, item, "token")
    version = _int_attr(job_id, table, item, "version")
    expires_at = None
    if owner is not None:
        expires_at = _from_us(_int_attr(job_id, table, item, "lease_expires_us"))
    checkpoint = _str_attr(job_id, table, item, "checkpoint")
    return _JobRow(owner, token, expires_at, version, checkpoint)


def _parse_checkpoint(job_id: str, table: str, row: _JobRow) -> Checkpoint:
    assert row.checkpoint is not None
    try:
        data = json.loads(row.checkpoint)
    except ValueError as exc:
        detail = f"not JSON ({exc.msg})" if isinstance(exc, json.JSONDecodeError) else "not JSON"
        raise CorruptCheckpointError(job_id, table, f"checkpoint is {detail}") from None
    if not isinstance(data, dict):
        raise CorruptCheckpointError(job_id, table, "checkpoint is not a JSON object")
    if data.get("job_id") != job_id:
        raise CorruptCheckpointError(job_id, table, "the checkpoint names another job")
    try:
        return Checkpoint.model_validate({**data, "version": row.version})
    except ValidationError as exc:
        raise CorruptCheckpointError(job_id, table, describe_invalid(exc)) from None


def _parse_slice(job_id: str, table: str, item: Mapping[str, Any]) -> SliceRecord:
    _check_format(job_id, table, item)
    text = _str_attr(job_id, table, item, "record")
    if text is None:
        raise CorruptCheckpointError(job_id, table, "slice record has no record attribute")
    try:
        record = SliceRecord.model_validate_json(text)
    except ValidationError as exc:
        raise CorruptCheckpointError(job_id, table, describe_invalid(exc)) from None
    if record.job_id != job_id:
        raise CorruptCheckpointError(job_id, table, "a slice record names another job")
    return record


# --- registry -------------------------------------------------------------------------------


def register() -> None:
    """Make ``core.checkpoint.open_store`` open ``dynamodb://TABLE`` URLs (idempotent)."""
    register_store(SCHEME, DynamoDbCheckpointStore.from_url)


__all__ = [
    "FORMAT",
    "HISTORY_TTL_DAYS",
    "SCHEME",
    "DynamoDbCheckpointStore",
    "create_table",
    "parse_dynamodb_url",
    "register",
]

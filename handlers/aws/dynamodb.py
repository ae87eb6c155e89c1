"""DynamoDB plumbing for the checkpoint store: its URL, its client, the table, its errors and
attribute values. The store itself (checkpoint_store.py) reads and conditionally writes only.

boto3 is imported under handlers/aws/ only: core never imports a cloud SDK.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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

from core.errors import ConfigError, CorruptCheckpointError, PermanentError, StoreUnavailableError
from core.stores.base import format_mismatch
from core.stores.url import one_name, read_options, split_store_url

SCHEME = "dynamodb"
FORMAT = 1
"""Record format written by this version; records of another format are refused, not guessed."""
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
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TABLE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
URL_HINT = (
    "use dynamodb://TABLE, optionally with ?region=REGION&endpoint_url=URL "
    "(e.g. dynamodb://esdb-relay-checkpoints?region=eu-west-1)"
)


# --- URL ------------------------------------------------------------------------------------


def parse_dynamodb_url(url: str) -> tuple[str, dict[str, str]]:
    """``dynamodb://TABLE?region=R&endpoint_url=U`` → ``("TABLE", {"region": R, ...})``.

    The store URL names the table only; the job id comes from the job configuration.
    """
    rest, pairs = split_store_url(url, SCHEME, hint=URL_HINT)
    table = one_name(rest, SCHEME, "table", hint=URL_HINT)
    validate_table_name(table)
    options = read_options(
        pairs,
        SCHEME,
        {"region", "endpoint_url"},
        unknown_hint="the options are ?region=REGION and ?endpoint_url=URL; credentials come "
        "from the usual AWS environment, never from the URL",
        empty_hint=URL_HINT,
    )
    return table, options


def validate_table_name(table: str) -> None:
    if not 3 <= len(table) <= 255 or not set(table) <= _TABLE_NAME_CHARS:
        raise ConfigError(
            f"{table!r} is not a valid DynamoDB table name",
            field="checkpoint_store",
            hint="table names are 3-255 characters of letters, digits, '_', '-' and '.'",
        )


def safe_endpoint(endpoint: str | None) -> str | None:
    """The endpoint without user info, query or fragment (nothing secret goes into messages)."""
    if not endpoint:
        return None
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


# --- client and table -----------------------------------------------------------------------


def make_client(
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
            hint=URL_HINT,
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


# --- errors ---------------------------------------------------------------------------------


class ConditionFailed(Exception):
    """A conditional write was refused; ``item`` is the record the condition saw (or None)."""

    def __init__(self, item: dict[str, Any] | None) -> None:
        super().__init__("condition failed")
        self.item = item


@contextmanager
def translated(table: str, region: str | None, endpoint: str | None, action: str) -> Iterator[None]:
    """botocore failures → the esdb-relay error hierarchy (never with credentials); a refused
    condition → ``ConditionFailed``."""
    where = f"DynamoDB table {table!r}" + (f" in {region}" if region else "")
    if endpoint:
        where += f" at {endpoint}"
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if code == _CONDITION_FAILED:
            raise ConditionFailed(exc.response.get("Item")) from None
        if code == "ResourceNotFoundException":
            raise ConfigError(
                f"{where} does not exist",
                field="checkpoint_store",
                hint=f"create it (keys pk and sk, both strings, TTL on attribute ttl): "
                f"deploy the stack in infra/aws, or run `aws dynamodb create-table "
                f"--table-name {table} --attribute-definitions "
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


# --- attribute values -----------------------------------------------------------------------


def n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def s(value: str) -> dict[str, str]:
    return {"S": value}


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch: exact, and comparable inside condition expressions."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def describe(item: Mapping[str, Any] | None) -> str:
    if not item:
        return "no record"
    return "attributes " + ", ".join(sorted(item))


def int_attr(job_id: str, table: str, item: Mapping[str, Any], name: str) -> int:
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


def str_attr(job_id: str, table: str, item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != {"S"} or not isinstance(value["S"], str):
        raise CorruptCheckpointError(job_id, table, f"{name} is not a string")
    return value["S"]


def check_format(job_id: str, table: str, item: Mapping[str, Any]) -> None:
    """CorruptCheckpointError unless ``item`` is an esdb-relay record of this format and job."""
    if "format" not in item:
        raise CorruptCheckpointError(
            job_id, table, f"not an esdb-relay record (no format attribute; {describe(item)})"
        )
    fmt = item["format"]
    if fmt != n(FORMAT):
        shown = fmt.get("N", fmt) if isinstance(fmt, Mapping) else fmt
        raise CorruptCheckpointError(job_id, table, format_mismatch(shown, FORMAT))
    if str_attr(job_id, table, item, "job_id") not in (None, job_id):
        raise CorruptCheckpointError(job_id, table, "the record names another job")

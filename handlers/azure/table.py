"""Azure Table Storage plumbing for the checkpoint store: its URL and connection settings, the
clients, error translation and property values. The store itself (checkpoint_store.py) reads
and conditionally writes only.

azure-data-tables is imported under handlers/azure/ only: core never imports a cloud SDK.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import urlsplit

from core.errors import ConfigError, PermanentError, StoreUnavailableError
from core.stores.models import SliceRecord
from core.stores.url import read_options, split_store_url

try:
    from azure.core.exceptions import (
        AzureError,
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )
    from azure.data.tables import EntityProperty, TableServiceClient
except ImportError as exc:  # pragma: no cover - only without the azure extra
    _SDK_MISSING: ImportError | None = exc
else:
    _SDK_MISSING = None

SCHEME = "azuretable"
FORMAT = 1
"""Record format written by this version; entities of another format are refused, not guessed."""

CONNECTION_STRING_SETTING = "AZURE_STORAGE_CONNECTION_STRING"
PROPERTY_LIMIT = 64 * 1024
"""Bytes per property value; strings count UTF-16 (so at most 32K characters)."""

_TRUNCATED = " … (truncated to fit Azure Table Storage's 64 KiB property limit)"
_TABLE_RE = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
_KEY_FORBIDDEN = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
URL_HINT = (
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


def require_sdk() -> None:
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
    rest, pairs = split_store_url(url, SCHEME, hint=URL_HINT)
    table = rest[:-1] if rest.endswith("/") else rest
    if "/" in table:
        raise ConfigError(
            "azuretable:// URLs name only a table, no path",
            field="checkpoint_store",
            hint=URL_HINT,
        )
    validate_table_name(table, "not a valid Azure table name in the azuretable:// URL")
    options = read_options(
        pairs,
        SCHEME,
        _URL_OPTIONS,
        unknown_hint="options: " + ", ".join(sorted(_URL_OPTIONS)) + " (keys and SAS tokens "
        "belong in a connection string setting, never in the store URL)",
        convert=_url_option,
    )
    return table, options


def validate_table_name(table: str, message: str = "not a valid Azure table name") -> None:
    if not _TABLE_RE.fullmatch(table) or table.lower() == "tables":
        raise ConfigError(message, field="checkpoint_store", hint=URL_HINT)


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
                "create_table must be true or false", field="checkpoint_store", hint=URL_HINT
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


def resolve_connection(
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


def make_service(connection: _Connection, options: dict[str, Any]) -> TableServiceClient:
    """The account's service client; ConfigError (naming only where the settings came from)
    when the SDK refuses them."""
    try:
        if connection.connection_string is not None:
            return TableServiceClient.from_connection_string(
                connection.connection_string, **options
            )
        return TableServiceClient(
            endpoint=connection.account_url or "", credential=connection.credential, **options
        )
    except (ValueError, TypeError, AzureError):
        # The SDK's message may quote the string; say only where it came from.
        raise ConfigError(
            f"the Azure Storage connection from {connection.source} is not usable",
            field="checkpoint_store",
            hint="use a connection string like DefaultEndpointsProtocol=https;"
            "AccountName=…;AccountKey=…;EndpointSuffix=core.windows.net, or an https "
            "account_url with a managed identity",
        ) from None


def endpoint_of(service: TableServiceClient) -> str:
    parts = urlsplit(service.url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


# --- errors ---------------------------------------------------------------------------------


@contextmanager
def translated(where: str, job_id: str, source: str, retry_hint: str) -> Iterator[None]:
    """SDK failures as esdb-relay errors; SDK texts are never passed on verbatim (they may
    quote URLs with SAS tokens), and the SDK exception is not chained."""
    try:
        yield
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise StoreUnavailableError(
            f"{where} cannot be reached ({_brief(exc)})",
            hint="check that the storage account endpoint is reachable from here (network "
            "rules, private endpoint, DNS, Azurite running) and retry; " + retry_hint,
        ) from None
    except ClientAuthenticationError as exc:
        _auth_error(where, source, exc)
    except HttpResponseError as exc:
        status = exc.status_code
        if status in (401, 403):
            _auth_error(where, source, exc)
        if status is not None and (status in (408, 429) or status >= 500):
            raise StoreUnavailableError(
                f"{where} answered {status} {code(exc)}".rstrip(),
                hint="the storage service is busy or failing; the slice is retried with "
                "backoff. " + retry_hint,
            ) from None
        raise PermanentError(
            f"{where} refused a request for job {job_id!r}: {status} {code(exc)}".rstrip(),
            hint="this is unexpected; check the table's contents and the SDK version",
        ) from None
    except AzureError as exc:
        raise StoreUnavailableError(
            f"{where} failed ({type(exc).__name__})", hint=retry_hint
        ) from None


def _auth_error(where: str, source: str, exc: Exception) -> NoReturn:
    raise ConfigError(
        f"{where} refused the credentials from {source} ({code(exc) or 'denied'})",
        field="checkpoint_store",
        hint="with a connection string check the account name and key; with a managed "
        "identity grant it Storage Table Data Contributor on the table or the account "
        "(role assignments take a few minutes to apply)",
    ) from None


def table_missing(exc: HttpResponseError) -> bool:
    return "TableNotFound" in code(exc) or "TableNotFound" in str(exc)


def code(exc: Exception) -> str:
    error_code = getattr(exc, "error_code", None)
    return str(getattr(error_code, "value", error_code) or "")


def _brief(exc: Exception) -> str:
    """A short, secret-free description of a transport failure."""
    text = str(getattr(exc, "message", None) or exc)
    text = re.sub(r"\?\S*", "", text)  # query strings (SAS tokens)
    text = re.sub(r"(?i)(accountkey|sig|sharedaccesssignature)=[^;&\s]*", r"\1=***", text)
    text = re.sub(r"<[^>]* object at 0x[0-9a-f]+>:?\s*", "", text)
    text = " ".join(text.split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


# --- values ---------------------------------------------------------------------------------


def integer(value: Any) -> int | None:
    if isinstance(value, EntityProperty):
        value = value.value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime) or value.tzinfo is None:
        return None
    return datetime.fromisoformat(value.isoformat()).astimezone(UTC)  # plain datetime, not SDK's


def _utf16_bytes(text: str) -> int:
    return len(text.encode("utf-16-le"))


def fits(text: str, what: str) -> None:
    if _utf16_bytes(text) > PROPERTY_LIMIT:
        raise PermanentError(
            f"{what} is {_utf16_bytes(text)} bytes as UTF-16, over Azure Table Storage's "
            f"{PROPERTY_LIMIT} byte property limit",
            hint="this should not happen; report it",
        )


def record_json(record: SliceRecord) -> str:
    """The record as JSON, its ``error`` shortened if needed to fit one property."""
    text = record.model_dump_json()
    while _utf16_bytes(text) > PROPERTY_LIMIT and record.error:
        excess_chars = (_utf16_bytes(text) - PROPERTY_LIMIT) // 2 + 1
        keep = max(0, len(record.error) - excess_chars - len(_TRUNCATED) - 64)
        record = record.model_copy(update={"error": record.error[:keep] + _TRUNCATED})
        text = record.model_dump_json()
    fits(text, "the slice record")
    return text


def require_key(job_id: str) -> None:
    """Job ids become PartitionKeys: at most 1 KiB, none of / \\ # ? or control characters."""
    if not isinstance(job_id, str) or not job_id:
        raise ValueError("job_id must be a non-empty string")
    if _KEY_FORBIDDEN.search(job_id) or _utf16_bytes(job_id) > 1024:
        raise ValueError(
            f"job_id {job_id[:80]!r} cannot be an Azure table key (no / \\ # ? or control "
            "characters, at most 512 characters)"
        )

"""Firestore plumbing for the checkpoint store: its URL, its client, its errors and values. The
store itself (checkpoint_store.py) reads and conditionally writes only.

google-cloud libraries are imported under handlers/gcp/ only: core never imports a cloud SDK.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import google.auth.exceptions
from google.api_core import exceptions as gexc
from google.cloud import firestore

from core.errors import ConfigError, StoreUnavailableError
from core.stores.base import format_mismatch
from core.stores.url import one_name, read_options, split_store_url

SCHEME = "firestore"
FORMAT = 1
"""Document format written by this version; documents of another format are refused."""

DEFAULT_DATABASE = "(default)"

_INT64_MAX = 2**63 - 1
_ID_RE = re.compile(r"[A-Za-z0-9_.\-]+")
_RESERVED_ID_RE = re.compile(r"__.*__")
URL_HINT = (
    "use firestore://COLLECTION, optionally with ?project=PROJECT&database=DATABASE"
    "&timeout=SECONDS (e.g. firestore://esdb-relay-checkpoints?project=my-project)"
)

# Errors a read may retry (the Firestore API's own choice); a write retries only what cannot
# have been applied.
READ_RETRYABLE = (
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.ResourceExhausted,
    gexc.ServiceUnavailable,
)
WRITE_RETRYABLE = (gexc.ResourceExhausted, gexc.ServiceUnavailable)
CONFLICTS = (gexc.AlreadyExists, gexc.FailedPrecondition, gexc.Aborted)
"""What a conditional write answers when the document changed since it was read."""


# --- URL ------------------------------------------------------------------------------------


def parse_firestore_url(url: str) -> tuple[str, dict[str, Any]]:
    """``firestore://COLLECTION?project=P&database=D&timeout=5`` → ``("COLLECTION", {...})``.

    The store URL names the collection only; the job id comes from the job configuration.
    Credentials never go in the URL: they come from Application Default Credentials.
    """
    rest, pairs = split_store_url(url, SCHEME, hint=URL_HINT)
    collection = one_name(rest, SCHEME, "collection", hint=URL_HINT)
    validate_collection_id(collection)
    options = read_options(
        pairs,
        SCHEME,
        {"project", "database", "timeout", "attempts", "history_ttl_days"},
        unknown_hint="the options are ?project=, ?database=, ?timeout=SECONDS, ?attempts=N and "
        "?history_ttl_days=DAYS; credentials come from the usual Google Cloud "
        "environment (Application Default Credentials), never from the URL",
        convert=_option,
        empty_hint=URL_HINT,
    )
    return collection, options


def _option(key: str, value: str) -> Any:
    if key in ("project", "database"):
        if any(c.isspace() for c in value) or "/" in value:
            raise ConfigError(
                f"firestore store option {key} is not a valid {key} id",
                field="checkpoint_store",
                hint=URL_HINT,
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


def require_document_id(job_id: str) -> None:
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


# --- client ---------------------------------------------------------------------------------


def make_client(collection: str, project: str | None, database: str) -> firestore.Client:
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


# --- errors ---------------------------------------------------------------------------------


def translate(
    exc: BaseException, where: str, *, project: str, database: str, timeout: float
) -> BaseException:
    """What a Firestore or google-auth failure means for the caller; other errors as they are.
    Messages name the collection and the fix, never credentials."""
    auth = find(exc, google.auth.exceptions.GoogleAuthError)
    if auth is not None:
        return StoreUnavailableError(
            f"Firestore checkpoint store {where} cannot get credentials ({type(auth).__name__})",
            hint="run under a service account (Cloud Functions provides one), or set "
            "GOOGLE_APPLICATION_CREDENTIALS / run `gcloud auth application-default login`; "
            "for the emulator set FIRESTORE_EMULATOR_HOST",
        )
    api = find(exc, (gexc.GoogleAPICallError, gexc.RetryError))
    if api is None:
        return exc
    reason = _reason(api)
    if isinstance(api, gexc.PermissionDenied | gexc.Unauthenticated):
        return StoreUnavailableError(
            f"Firestore checkpoint store {where} refused access: {reason}",
            hint=f"grant the function's service account roles/datastore.user on project "
            f"{project!r} (see docs/stores/firestore.md), or check its credentials",
        )
    if isinstance(api, gexc.NotFound):
        return StoreUnavailableError(
            f"Firestore checkpoint store {where} was not found: {reason}",
            hint="create the database (`gcloud firestore databases create --database="
            f"{database} --location=REGION`, Native mode), or fix ?project= / "
            "?database= in the store URL",
        )
    if isinstance(api, gexc.FailedPrecondition):
        return StoreUnavailableError(
            f"Firestore checkpoint store {where} cannot be used: {reason}",
            hint="the database must be a Firestore database in Native mode (not Datastore "
            "mode); see docs/stores/firestore.md",
        )
    return StoreUnavailableError(
        f"Firestore checkpoint store {where} is unavailable: {reason}",
        hint="check that the function reaches firestore.googleapis.com (Private Google "
        "Access on its subnet) or, for the emulator, that FIRESTORE_EMULATOR_HOST names a "
        f"running emulator; the slice is retried (raise ?timeout=SECONDS above "
        f"{timeout:g} if the store is slow)",
    )


def find(exc: BaseException, types: type | tuple[type, ...]) -> BaseException | None:
    """The first exception of ``types`` in ``exc``'s cause/context chain (a failed call can
    hide the error behind it)."""
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


# --- values ---------------------------------------------------------------------------------


def plain(value: Any) -> Any:
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
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def require_int64(value: Any, what: str) -> None:
    if isinstance(value, dict):
        for item in value.values():
            require_int64(item, what)
    elif isinstance(value, int) and not isinstance(value, bool) and value > _INT64_MAX:
        raise ValueError(f"{what} holds {value}, over Firestore's 64-bit integers")


def describe_format(fmt: object) -> str:
    if fmt is None:
        return "no format field: not a document written by esdb-relay"
    return format_mismatch(fmt, FORMAT, noun="document")

"""Connection strings from AWS Secrets Manager or SSM Parameter Store, cached per container.

`ESDB_RELAY_SOURCE_SECRET` / `ESDB_RELAY_TARGET_SECRET` name where each connection string is:
a Secrets Manager secret id or ARN, or `ssm:/parameter/name` for an SSM SecureString. The value
goes into the job's settings only; it is never logged or returned.
"""

from __future__ import annotations

import os
import time
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from core.errors import ConfigError, StoreUnavailableError

CACHE_SECONDS = 300.0
_cache: dict[str, tuple[float, str]] = {}


def connection_settings(env: dict[str, str] | None = None) -> dict[str, Any]:
    """`{"source": ..., "target": ...}` for whichever of the two are kept in a secret store."""
    env = dict(os.environ if env is None else env)
    settings: dict[str, Any] = {}
    for side in ("source", "target"):
        reference = env.get(f"ESDB_RELAY_{side.upper()}_SECRET")
        if reference:
            settings[side] = read_secret(reference, side)
    return settings


def read_secret(reference: str, side: str) -> str:
    cached = _cache.get(reference)
    if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    try:
        if reference.startswith("ssm:"):
            value = boto3.client("ssm").get_parameter(Name=reference[4:], WithDecryption=True)
            secret = value["Parameter"]["Value"]
        else:
            secret = boto3.client("secretsmanager").get_secret_value(SecretId=reference)[
                "SecretString"
            ]
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("ResourceNotFoundException", "ParameterNotFound"):
            raise ConfigError(
                f"the {side} connection string's secret {reference!r} does not exist",
                field=side,
                hint=f"create it, or fix ESDB_RELAY_{side.upper()}_SECRET",
            ) from None
        if code in ("AccessDeniedException", "AccessDenied"):
            raise ConfigError(
                f"the function may not read the {side} secret {reference!r}",
                field=side,
                hint="grant secretsmanager:GetSecretValue (or ssm:GetParameter + kms:Decrypt)",
            ) from None
        raise StoreUnavailableError(
            f"cannot read the {side} secret {reference!r}: {code}"
        ) from None
    except BotoCoreError as e:
        raise StoreUnavailableError(
            f"cannot reach the secret store for the {side} secret: {type(e).__name__}"
        ) from None
    _cache[reference] = (time.monotonic(), secret)
    return secret

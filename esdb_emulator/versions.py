"""The server versions the emulator can behave as: what each serves and advertises.

From KurrentDB's tags (kurrent-io/KurrentDB): v24.10.0 has no v2 API; v25.1.0 adds
`kurrentdb.protocol.v2.streams.StreamsService` with AppendSession (schema names ASCII only:
SchemaNameValidator `^[a-zA-Z0-9_.$:-]+$`); v26.1.0 adds AppendRecords to that service
(schema names: Unicode letters and digits, NFC). ServerFeatures reports the version as
major.minor.patch (ServerFeatures.cs: VersionInfo.Version's first three parts).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerVersion:
    name: str  # as given to --server-version
    full: str  # as ServerFeatures reports it
    append_session: bool  # v2 StreamsService/AppendSession
    append_records: bool  # v2 StreamsService/AppendRecords
    unicode_schema_names: bool


VERSIONS = {
    "24.10": ServerVersion("24.10", "24.10.0", False, False, False),
    "25.1": ServerVersion("25.1", "25.1.0", True, False, False),
    "26.1": ServerVersion("26.1", "26.1.0", True, True, True),
}
DEFAULT_VERSION = "25.1"  # what the emulator advertised before the switch existed


def server_version(name: str) -> ServerVersion:
    try:
        return VERSIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown server version {name!r}; the emulator behaves as {', '.join(VERSIONS)}"
        ) from None

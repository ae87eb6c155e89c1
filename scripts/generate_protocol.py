"""Regenerate core/protocol/ from the vendored .proto files (run from the repository root):

    .venv/bin/python scripts/generate_protocol.py

The sources in core/protocol/protos/ are KurrentDB's (kurrent-io/KurrentDB at commit
44996ed0576221c14adb8abfdc34cedee3e19362: proto/kurrentdb/protocol/v2/streams/*.proto,
proto/kurrent/rpc/errors.proto and src/Protos/Grpc/serverfeatures.proto) and googleapis'
google/rpc/status.proto and error_details.proto (as googleapis-common-protos 1.75 ships them).
Edits made while compiling, none of which changes the wire format:
- imports point under `core/protocol/`, so the modules live in the `core.protocol` package;
- the `(kurrent.rpc.error)` enum-value options and their `kurrent/rpc/rpc.proto` import are
  dropped (server-side status-code annotations; rpc.proto would pull in google/rpc/code.proto);
- google/rpc's package becomes `esdb_relay.rpc`: googleapis-common-protos (present with
  the Google Cloud SDKs) registers `google.rpc.*` in the same descriptor pool, and depending on
  it would put its google/cloud/ modules into every cloud's package. Any-packed details are
  matched by the name after the last '.', so the type URLs still say google.rpc.*;
- serverfeatures.proto uses google.protobuf.Empty instead of event_store.client.Empty (both
  empty; esdbclient already registers event_store.client.Empty).
Compiled with the grpcio-tools of .venv (< 1.72, matching grpcio 1.71 and protobuf 5.29).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "core" / "protocol" / "protos"
PREFIX = "core/protocol/"
_LOCAL_IMPORT = re.compile(r'import "((?:kurrent|kurrentdb|google/rpc)/[^"]+)";')
_RPC_IMPORT = re.compile(r'import "kurrent/rpc/rpc.proto";\n')
_ERROR_OPTION = re.compile(r"\s*\[\(kurrent\.rpc\.error\)\s*=\s*\{[^}]*\}\]")


def _rewrite(text: str, name: str) -> str:
    text = _RPC_IMPORT.sub("", text)
    text = _ERROR_OPTION.sub("", text)
    text = _LOCAL_IMPORT.sub(lambda m: f'import "{PREFIX}{m.group(1)}";', text)
    text = text.replace("package google.rpc;", "package esdb_relay.rpc;")
    if name == "serverfeatures.proto":
        text = text.replace('import "shared.proto";', 'import "google/protobuf/empty.proto";')
        text = text.replace("event_store.client.Empty", "google.protobuf.Empty")
    return text


def main() -> int:
    protos = sorted(p.relative_to(SOURCES) for p in SOURCES.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp)
        for rel in protos:
            target = staged / PREFIX / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_rewrite((SOURCES / rel).read_text(), rel.name))
        tools = Path(grpc_tools.__file__).parent
        args = [
            "protoc",
            f"-I{staged}",
            f"-I{tools / '_proto'}",
            f"--python_out={ROOT}",
            f"--pyi_out={ROOT}",
            f"--grpc_python_out={ROOT}",
            *(f"{PREFIX}{rel}" for rel in protos),
        ]
        code = protoc.main(args)
        if code:
            return code
    for directory in {(ROOT / PREFIX / rel).parent for rel in protos}:
        while directory != ROOT / "core":
            (directory / "__init__.py").touch()
            directory = directory.parent
    return 0


if __name__ == "__main__":
    sys.exit(main())

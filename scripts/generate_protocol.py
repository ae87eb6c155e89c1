"""Regenerate core/protocol/ from the vendored .proto files (run from the repository root):

    .venv/bin/python scripts/generate_protocol.py

The sources in core/protocol/protos/ are KurrentDB's (kurrent-io/KurrentDB at commit
44996ed0576221c14adb8abfdc34cedee3e19362: proto/kurrentdb/protocol/v2/streams/*.proto,
proto/kurrent/rpc/*.proto and src/Protos/Grpc/serverfeatures.proto). Imports are rewritten so
the generated modules live under `core.protocol`; serverfeatures.proto imports
google.protobuf.Empty instead of event_store.client.Empty (both are empty messages, so the wire
format is identical, and esdbclient already registers event_store.client.Empty). Compiled with
the grpcio-tools of .venv (< 1.72, matching grpcio 1.71 and protobuf 5.29).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import google.protobuf
import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "core" / "protocol" / "protos"
PREFIX = "core/protocol/"
_LOCAL_IMPORT = re.compile(r'import "((?:kurrent|kurrentdb)/[^"]+)";')


def _rewrite(text: str, name: str) -> str:
    text = _LOCAL_IMPORT.sub(lambda m: f'import "{PREFIX}{m.group(1)}";', text)
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
        site_packages = Path(google.protobuf.__file__).parents[2]  # holds google/rpc/*.proto
        args = [
            "protoc",
            f"-I{staged}",
            f"-I{tools / '_proto'}",
            f"-I{site_packages}",
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

"""Who may import what (issue 14): only core/eventstore/ imports the database client; core/
imports no cloud SDK; each cloud handler imports core, its own folder and its own cloud's SDK
only. (The emulator and the benchmarks use esdbclient's compiled protocol and client freely:
they are not the relay.)"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]
CLIENTS = {"esdbclient", "kurrentdbclient"}
# Package prefixes of each cloud's SDK (google.protobuf is gRPC's, not Google Cloud's).
CLOUDS = {
    "aws": ("boto3", "botocore"),
    "gcp": ("google.cloud", "google.api_core", "google.auth", "functions_framework"),
    "azure": ("azure",),
}
ALL_CLOUD_SDKS = tuple(prefix for prefixes in CLOUDS.values() for prefix in prefixes)


def imports(path: Path) -> set[str]:
    """The top-level packages a module imports (absolute imports)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def modules(folder: str) -> list[Path]:
    return [p for p in (ROOT / folder).rglob("*.py") if "protocol" not in p.parts]


def top(name: str) -> str:
    return name.split(".")[0]


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_only_core_eventstore_imports_the_database_client():
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for folder in ("core", "handlers")
        for path in modules(folder)
        if not path.is_relative_to(ROOT / "core" / "eventstore")
        for name in imports(path)
        if top(name) in CLIENTS
    ]
    assert offenders == []


def test_core_imports_no_cloud_sdk():
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules("core")
        for name in imports(path)
        if under(name, ALL_CLOUD_SDKS)
    ]
    assert offenders == []


def test_each_cloud_handler_imports_its_own_cloud_only():
    offenders = []
    for cloud, sdks in CLOUDS.items():
        others = tuple(p for p in ALL_CLOUD_SDKS if p not in sdks)
        for path in modules(f"handlers/{cloud}"):
            for name in imports(path):
                if under(name, others) or (
                    top(name) == "handlers" and not name.startswith(f"handlers.{cloud}")
                ):
                    offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []

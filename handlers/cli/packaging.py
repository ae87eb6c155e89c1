"""`esdb-relay package aws|gcp|azure`: build the deployable zip for one cloud.

The zip holds `core/`, `handlers/__init__.py` and that cloud's `handlers/<cloud>/` at its root,
plus only that cloud's runtime dependencies:

- aws: the dependencies installed at the zip root (Lambda puts /var/task on sys.path), binary
  wheels for manylinux x86_64 (or aarch64) and the chosen CPython; entry point
  `handlers.aws.lambda_function.handler`.
- gcp: a root `main.py` re-exporting `on_event` and `on_http`, and a pinned `requirements.txt`
  that Cloud Build installs; no vendored dependencies.
- azure: a root `function_app.py` re-exporting `app`, `host.json`, a pinned `requirements.txt`
  and the dependencies installed into `.python_packages/lib/site-packages`.

The runtime dependency set is the project's base dependencies without the CLI-only ones
(typer, rich — core imports neither; cryptography stays: core.tools.preflight reads
certificates with it) plus the cloud's extra. It is resolved once with
`uv pip compile` against constraints.txt and, by default, pinned to the versions installed in the
environment running this command (the versions the tests ran against), so two builds from the
same checkout and environment produce the same bytes: entries are sorted, timestamps fixed, file
modes normalised, and nothing machine-specific (console scripts with this machine's shebang, uv's
lock file, byte code) is kept.
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

CLOUDS = ("aws", "gcp", "azure")

# Base dependencies only the CLI needs: core and the handlers import neither (pyyaml stays:
# core.config reads YAML job files; cryptography stays: core.tools.preflight inspects certificates).
CLI_ONLY = frozenset({"typer", "rich", "prometheus-client"})

# Installed in the build environment for incidental reasons; never pinned from it.
NOT_PINNED_FROM_ENV = frozenset({"pip", "setuptools", "wheel", "uv", "esdb-relay"})

MiB = 1024 * 1024
MB = 1000 * 1000


@dataclass(frozen=True)
class Limit:
    zipped: int | None  # bytes; exceeding it fails the build
    unzipped: int | None
    zipped_soft: int | None = None  # exceeding it only warns
    source: str = ""


LIMITS = {
    # Lambda quotas: 50 MB zipped for a direct upload (CodeSizeZipped = 52,428,800 bytes) and
    # 250 MB unzipped including layers (CodeSizeUnzipped = 262,144,000 bytes). `sam deploy`
    # uploads through S3, where only the unzipped limit applies, so the zipped one only warns.
    "aws": Limit(
        zipped=None,
        unzipped=250 * MiB,
        zipped_soft=50 * MiB,
        source="AWS Lambda quotas: 50 MB zipped direct upload, 250 MB unzipped",
    ),
    # Cloud Functions quotas: max deployment size 100 MB (compressed) for sources.
    "gcp": Limit(
        zipped=100 * MB,
        unzipped=None,
        source="Cloud Functions quotas: 100 MB compressed sources",
    ),
    # Azure does not publish one hard cap for a zip deployment package that holds on every plan;
    # 100 MB zipped is this project's budget (well inside what zip deploy and run-from-package
    # accept) so uploads and cold starts stay quick.
    "azure": Limit(
        zipped=100 * MB,
        unzipped=None,
        source="esdb-relay's own budget for Azure zip deploy: 100 MB zipped",
    ),
}

PLATFORMS = {
    # --platform value -> uv --python-platform. manylinux2014 (glibc 2.17) wheels run on every
    # Lambda runtime (Amazon Linux 2 and 2023), Cloud Functions' and Azure Functions' Linux images.
    "x86_64": "x86_64-manylinux2014",
    "amd64": "x86_64-manylinux2014",
    "arm64": "aarch64-manylinux2014",
    "aarch64": "aarch64-manylinux2014",
}

# 1980-01-01, the earliest time a zip entry can carry: every entry gets it.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)

JUNK_DIRS = frozenset(
    {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", ".git"}
)
JUNK_SUFFIXES = (".pyc", ".pyo", ".swp", "~", ".DS_Store")
TEST_DIRS = frozenset({"tests", "test"})

AZURE_HOST_JSON = {
    "version": "2.0",
    # The handler's default ESDB_RELAY_FUNCTION_TIMEOUT is 600 s: keep the two in step.
    "functionTimeout": "00:10:00",
    "extensionBundle": {
        "id": "Microsoft.Azure.Functions.ExtensionBundle",
        "version": "[4.*, 5.0.0)",
    },
    "extensions": {
        "queues": {
            # the chain enqueues with TextBase64EncodePolicy
            "messageEncoding": "base64",
            # one chained slice at a time per instance; the lease fences the rest anyway
            "batchSize": 1,
            "newBatchThreshold": 0,
            "maxDequeueCount": 5,
        }
    },
    "logging": {"logLevel": {"default": "Information"}},
}

GCP_MAIN = '''"""Cloud Functions entry points (functions-framework loads the root `main.py`)."""

from handlers.gcp.main import on_event, on_http

__all__ = ["on_event", "on_http"]
'''

AZURE_FUNCTION_APP = '''"""Azure Functions (Python v2 model) indexes this FunctionApp."""

from handlers.azure.function_app import app

__all__ = ["app"]
'''


class PackageError(Exception):
    """A build failed; the message names what failed."""


@dataclass
class Artifact:
    cloud: str
    path: Path
    size: int  # zipped bytes
    unzipped_size: int
    files: int
    python_version: str = "3.11"
    platform: str = "x86_64"
    requirements: list[str] = field(default_factory=list)  # name==version, sorted
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# The dependency set


def project_root() -> Path:
    """The source checkout holding core/, handlers/, pyproject.toml and constraints.txt."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file() or not (root / "core").is_dir():
        raise PackageError(
            f"no esdb-relay source checkout at {root} (pyproject.toml and core/ expected): "
            "run `esdb-relay package` from a checkout installed with `pip install -e .`"
        )
    return root


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise PackageError(f"cannot read the requirement {requirement!r} in pyproject.toml")
    return normalize(match.group(1))


def runtime_requirements(root: Path, cloud: str, *, aws_sdk: bool = True) -> list[str]:
    """Base dependencies minus the CLI-only ones, plus the cloud's extra (as in pyproject)."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    base = [r for r in project["dependencies"] if requirement_name(r) not in CLI_ONLY]
    extra = list(project.get("optional-dependencies", {}).get(cloud, []))
    if cloud == "aws" and not aws_sdk:
        # the Lambda runtime provides boto3 (an AWS-chosen, moving version)
        extra = [r for r in extra if requirement_name(r) not in {"boto3", "botocore"}]
    return base + extra


def project_version(root: Path) -> str:
    return str(tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"])


def environment_pins() -> list[str]:
    """`name==version` for every distribution in the running environment (the tested set)."""
    pins: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not name or normalize(name) in NOT_PINNED_FROM_ENV or "+" in dist.version:
            continue
        pins.setdefault(normalize(name), dist.version)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


# ---------------------------------------------------------------------------------------------
# uv


def find_uv() -> str:
    try:
        import uv  # type: ignore[import-not-found]

        return str(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        pass
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file():
        return str(beside)
    found = shutil.which("uv")
    if found:
        return found
    raise PackageError(
        "uv not found: packaging resolves and downloads the platform wheels with uv "
        "(install it into this environment: `pip install uv`)"
    )


NETWORK_ERRORS = re.compile(
    r"error sending request|dns error|failed to lookup address|tcp connect error|"
    r"connection refused|network is unreachable|could not connect|connection reset|"
    r"operation timed out|timed out|temporary failure in name resolution|"
    r"no such host|certificate",
    re.IGNORECASE,
)


def run_uv(args: list[str], what: str, index_url: str | None) -> None:
    command = [find_uv(), *args]
    if index_url:
        command += ["--index-url", index_url]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired as e:
        raise PackageError(f"{what}: uv did not finish within {e.timeout:.0f} s") from None
    except OSError as e:
        raise PackageError(f"{what}: cannot run uv ({e})") from None
    if done.returncode == 0:
        return
    message = (done.stderr or done.stdout).strip()
    if NETWORK_ERRORS.search(message):
        index = index_url or os.environ.get("UV_INDEX_URL") or "https://pypi.org/simple"
        raise PackageError(
            f"{what}: network unavailable — cannot reach the package index {index}\n{message}"
        )
    raise PackageError(f"{what}: uv failed (exit {done.returncode})\n{message}")


def resolve(
    requirements: list[str],
    *,
    constraints: list[str],
    python_platform: str,
    python_version: str,
    work: Path,
    index_url: str | None,
    exclude_newer: str | None,
) -> list[str]:
    """Exact pins (`name==version`, sorted) for the target platform and Python."""
    req_in = work / "requirements.in"
    req_in.write_text("\n".join(requirements) + "\n")
    constraints_txt = work / "constraints.txt"
    constraints_txt.write_text("\n".join(constraints) + "\n")
    locked = work / "requirements.lock"
    args = [
        "pip",
        "compile",
        str(req_in),
        "--constraints",
        str(constraints_txt),
        "--python-platform",
        python_platform,
        "--python-version",
        python_version,
        "--only-binary",
        ":all:",
        "--no-header",
        "--no-annotate",
        "--quiet",
        "--output-file",
        str(locked),
    ]
    if exclude_newer:
        args += ["--exclude-newer", exclude_newer]
    run_uv(args, "resolving the dependencies (uv pip compile)", index_url)
    pins = []
    for line in locked.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            pins.append(line)
    return sorted(pins, key=lambda pin: requirement_name(pin))


def install(
    pins: list[str],
    target: Path,
    *,
    python_platform: str,
    python_version: str,
    work: Path,
    index_url: str | None,
) -> None:
    locked = work / "install.txt"
    locked.write_text("\n".join(pins) + "\n")
    args = [
        "pip",
        "install",
        "--requirements",
        str(locked),
        "--no-deps",  # the lock already holds the whole closure
        "--target",
        str(target),
        "--python-platform",
        python_platform,
        "--python-version",
        python_version,
        "--only-binary",
        ":all:",
        "--link-mode",
        "copy",
        "--quiet",
    ]
    run_uv(args, "installing the platform wheels (uv pip install --target)", index_url)


# ---------------------------------------------------------------------------------------------
# Collecting the files


def _is_junk(parts: tuple[str, ...]) -> bool:
    return any(p in JUNK_DIRS for p in parts[:-1]) or parts[-1].endswith(JUNK_SUFFIXES)


def source_files(root: Path, folder: str) -> Iterator[tuple[str, Path]]:
    """(arcname, path) of the project's own files under `folder` (no byte code, no tests)."""
    base = root / folder
    for path in sorted(base.rglob("*")):
        if not path.is_file():
            continue
        parts = path.relative_to(root).parts
        if _is_junk(parts) or TEST_DIRS.intersection(parts[:-1]):
            continue
        yield "/".join(parts), path


def dependency_files(site: Path, prefix: str) -> dict[str, Path | bytes]:
    """The installed dependencies, minus what is machine-specific or not needed at run time.

    Dropped: `bin/` (console scripts carry this machine's interpreter path in their shebang),
    uv's `.lock`, byte code, and `tests`/`test` folders. Each RECORD is rewritten to list only
    the files kept, so it stays true and identical from machine to machine.
    """
    kept: dict[str, Path] = {}
    for path in sorted(site.rglob("*")):
        if not path.is_file():
            continue
        parts = path.relative_to(site).parts
        if parts[0] in {"bin", ".lock"} or _is_junk(parts):
            continue
        if TEST_DIRS.intersection(parts[:-1]):
            continue
        kept["/".join(parts)] = path
    files: dict[str, Path | bytes] = {}
    for rel, path in kept.items():
        if rel.endswith(".dist-info/RECORD"):
            files[prefix + rel] = _rewrite_record(path.read_text(), set(kept), rel)
        else:
            files[prefix + rel] = path
    return files


def _rewrite_record(text: str, kept: set[str], record: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in csv.reader(io.StringIO(text)):
        if not row:
            continue
        rel = str(PurePosixPath(os.path.normpath(row[0])))
        if rel == record:
            writer.writerow([row[0], "", ""])
        elif rel in kept:
            writer.writerow(row)
    return out.getvalue().encode()


def write_zip(files: dict[str, Path | bytes], destination: Path) -> int:
    """Write a deterministic zip atomically (temp file + rename); returns the unzipped size."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
    )
    tmp = Path(tmp_name)
    unzipped = 0
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf,
        ):
            for arcname in sorted(files):
                source = files[arcname]
                info = zipfile.ZipInfo(arcname, date_time=FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3  # Unix, so external_attr carries the mode
                executable = isinstance(source, Path) and os.stat(source).st_mode & 0o111
                info.external_attr = (0o100755 if executable else 0o100644) << 16
                if isinstance(source, bytes):
                    zf.writestr(info, source, compresslevel=6)
                    unzipped += len(source)
                else:
                    with source.open("rb") as src, zf.open(info, "w") as dst:
                        shutil.copyfileobj(src, dst, 1024 * 1024)
                    unzipped += source.stat().st_size
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates it 0600
        os.replace(tmp, destination)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return unzipped


# ---------------------------------------------------------------------------------------------
# The build


def _requirements_txt(cloud: str, version: str, pins: list[str], python_version: str) -> bytes:
    header = (
        f"# esdb-relay {version} ({cloud}): the runtime dependencies, pinned for CPython "
        f"{python_version} on linux x86_64.\n# Generated by `esdb-relay package {cloud}`.\n"
    )
    return (header + "\n".join(pins) + "\n").encode()


def _host_json(root: Path) -> bytes:
    provided = root / "infra" / "azure" / "host.json"
    if provided.is_file():
        try:
            json.loads(provided.read_text())
        except ValueError as e:
            raise PackageError(f"{provided} is not valid JSON: {e}") from None
        return provided.read_bytes()
    return (json.dumps(AZURE_HOST_JSON, indent=2) + "\n").encode()


def zip_name(cloud: str, version: str, platform: str) -> str:
    arch = "" if PLATFORMS[platform].startswith("x86_64") else "-arm64"
    return f"esdb-relay-{cloud}-{version}{arch}.zip"


def build(
    cloud: str,
    output: Path = Path("dist"),
    *,
    python_version: str = "3.11",
    platform: str = "x86_64",
    aws_sdk: bool = True,
    pin_env: bool = True,
    exclude_newer: str | None = None,
    index_url: str | None = None,
    root: Path | None = None,
) -> Artifact:
    """Build `<output>/esdb-relay-<cloud>-<version>.zip`; raises PackageError."""
    if cloud not in CLOUDS:
        raise PackageError(f"unknown cloud {cloud!r}: choose aws, gcp or azure")
    if platform not in PLATFORMS:
        raise PackageError(f"unknown platform {platform!r}: choose x86_64 or arm64")
    if cloud != "aws" and not PLATFORMS[platform].startswith("x86_64"):
        raise PackageError(f"{cloud} functions run on x86_64 only; --platform arm64 is for aws")
    if not re.fullmatch(r"3\.\d{1,2}", python_version):
        raise PackageError(f"--python-version {python_version!r}: expected e.g. 3.11")
    root = root or project_root()
    handler_dir = root / "handlers" / cloud
    if not handler_dir.is_dir():
        raise PackageError(f"{handler_dir} is missing")
    version = project_version(root)
    python_platform = PLATFORMS[platform]

    constraints_file = root / "constraints.txt"
    constraints = constraints_file.read_text().splitlines() if constraints_file.is_file() else []
    if pin_env:
        constraints += environment_pins()

    files: dict[str, Path | bytes] = {}
    for folder in ("core", f"handlers/{cloud}"):
        files.update(source_files(root, folder))
    files["handlers/__init__.py"] = root / "handlers" / "__init__.py"

    with tempfile.TemporaryDirectory(prefix=f"esdb-relay-package-{cloud}-") as tmp:
        work = Path(tmp)
        pins = resolve(
            runtime_requirements(root, cloud, aws_sdk=aws_sdk),
            constraints=constraints,
            python_platform=python_platform,
            python_version=python_version,
            work=work,
            index_url=index_url,
            exclude_newer=exclude_newer,
        )
        if cloud == "gcp":
            files["main.py"] = GCP_MAIN.encode()
            files["requirements.txt"] = _requirements_txt(cloud, version, pins, python_version)
        else:
            site = work / "site-packages"
            install(
                pins,
                site,
                python_platform=python_platform,
                python_version=python_version,
                work=work,
                index_url=index_url,
            )
            prefix = ".python_packages/lib/site-packages/" if cloud == "azure" else ""
            deps = dependency_files(site, prefix)
            clash = sorted(set(deps) & set(files))
            if clash:
                raise PackageError(f"a dependency would overwrite project files: {clash[:5]}")
            files.update(deps)
            if cloud == "azure":
                files["function_app.py"] = AZURE_FUNCTION_APP.encode()
                files["host.json"] = _host_json(root)
                files["requirements.txt"] = _requirements_txt(cloud, version, pins, python_version)

        bad = sorted(a for a in files if "esdb_emulator" in PurePosixPath(a).parts)
        if bad:
            raise PackageError(f"esdb_emulator must not be packaged: {bad[:5]}")

        destination = output / zip_name(cloud, version, platform)
        staging = output / f".{destination.name}.checked"
        unzipped = write_zip(files, staging)
        try:
            size = staging.stat().st_size
            warnings = _check_limits(cloud, size, unzipped)
            os.replace(staging, destination)
        finally:
            staging.unlink(missing_ok=True)

    return Artifact(
        cloud=cloud,
        path=destination,
        size=size,
        unzipped_size=unzipped,
        files=len(files),
        python_version=python_version,
        platform=platform,
        requirements=pins,
        warnings=warnings,
    )


def _check_limits(cloud: str, size: int, unzipped: int) -> list[str]:
    limit = LIMITS[cloud]
    if limit.zipped is not None and size >= limit.zipped:
        raise PackageError(
            f"the {cloud} zip is {mb(size)} zipped, over the {mb(limit.zipped)} limit "
            f"({limit.source})"
        )
    if limit.unzipped is not None and unzipped >= limit.unzipped:
        raise PackageError(
            f"the {cloud} zip is {mb(unzipped)} unzipped, over the {mb(limit.unzipped)} limit "
            f"({limit.source})"
        )
    if limit.zipped_soft is not None and size >= limit.zipped_soft:
        return [
            f"{mb(size)} zipped is over the {mb(limit.zipped_soft)} direct-upload limit: "
            "deploy through S3 (sam deploy does)"
        ]
    return []


def mb(n: int) -> str:
    return f"{n / MiB:.1f} MiB"


# ---------------------------------------------------------------------------------------------
# The next step


# ---------------------------------------------------------------------------------------------
# The command

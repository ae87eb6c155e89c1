"""`esdb-relay package aws|gcp|azure`: the deployable zips themselves.

Each cloud's zip is built once per session (uv resolves and downloads the platform wheels from
PyPI; later builds come from uv's cache) and then checked: the entry point sits where the
template names it, only that cloud's dependencies are in it, no emulator/tests/byte code, it is
below the platform's size limit, it imports cleanly in a bare virtualenv that sees nothing but
the unzipped files (for GCP: plus requirements.txt installed, as Cloud Build does), and building
it again gives the same bytes. No environment variable is needed to import any of the handlers:
they read their settings lazily, per invocation.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import platform as host_platform
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from handlers.cli import package as packager
from handlers.cli import packaging
from handlers.cli.packaging import (
    CLI_ONLY,
    LIMITS,
    Artifact,
    PackageError,
    build,
    find_uv,
    requirement_name,
    runtime_requirements,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
AZURE_SITE = ".python_packages/lib/site-packages"
CLOUDS = ("aws", "gcp", "azure")
# The SDK each cloud brings, as a folder of installed files: none may appear in another cloud's zip.
SDK_DIRS = {"aws": "botocore/", "gcp": "google/cloud/", "azure": "azure/"}

linux_x86_64 = pytest.mark.skipif(
    sys.platform != "linux" or host_platform.machine() not in {"x86_64", "AMD64"},
    reason="the packaged wheels are for linux x86_64",
)


# ---------------------------------------------------------------------------------------------
# Fixtures: one build per cloud per session


@pytest.fixture(scope="session")
def dist(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dist")


@pytest.fixture(scope="session")
def artifact_for(dist) -> Callable[..., Artifact]:
    built: dict[tuple[str, str], Artifact] = {}

    def get(cloud: str, platform: str = "x86_64") -> Artifact:
        if (cloud, platform) not in built:
            built[cloud, platform] = build(cloud, dist, platform=platform)
        return built[cloud, platform]

    return get


@pytest.fixture(scope="session")
def unpacked_for(artifact_for, tmp_path_factory) -> Callable[[str], Path]:
    done: dict[str, Path] = {}

    def get(cloud: str) -> Path:
        if cloud not in done:
            where = tmp_path_factory.mktemp(f"unzipped-{cloud}")
            with zipfile.ZipFile(artifact_for(cloud).path) as zf:
                zf.extractall(where)
            done[cloud] = where
        return done[cloud]

    return get


@pytest.fixture(params=CLOUDS)
def cloud(request) -> str:
    return request.param


def names(artifact: Artifact) -> list[str]:
    with zipfile.ZipFile(artifact.path) as zf:
        return zf.namelist()


def read(artifact: Artifact, name: str) -> str:
    with zipfile.ZipFile(artifact.path) as zf:
        return zf.read(name).decode()


def defines(source: str, *functions: str) -> set[str]:
    """Which of `functions` the module defines or imports at its top level."""
    found = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found.add(node.name)
        elif isinstance(node, ast.ImportFrom):
            found.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Assign):
            found.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return found & set(functions)


# ---------------------------------------------------------------------------------------------
# Where the templates look


def aws_handler_name() -> str:
    """The Handler the SAM template names (the documented one until the template exists)."""
    template = ROOT / "infra" / "aws" / "template.yaml"
    if template.is_file():
        handlers = re.findall(r"^\s*Handler:\s*['\"]?([\w.]+)", template.read_text(), re.M)
        if handlers:
            return handlers[0]
    return "handlers.aws.lambda_function.handler"


def gcp_entry_points() -> set[str]:
    """The entry points the Terraform names (the documented ones until it exists)."""
    found: set[str] = set()
    for tf in sorted((ROOT / "infra" / "gcp").glob("*.tf")):
        found.update(re.findall(r'entry_point\s*=\s*"(\w+)"', tf.read_text()))
    return found or {"on_event", "on_http"}


def test_entry_points_sit_where_the_templates_name_them(artifact_for):
    module, _, function = aws_handler_name().rpartition(".")
    aws = artifact_for("aws")
    path = module.replace(".", "/") + ".py"
    assert path == "handlers/aws/lambda_function.py"
    assert path in names(aws)
    assert defines(read(aws, path), function) == {function}

    gcp = artifact_for("gcp")
    assert {"main.py", "requirements.txt"} <= set(names(gcp))
    wanted = gcp_entry_points()
    assert defines(read(gcp, "main.py"), *wanted) == wanted
    assert "handlers/gcp/main.py" in names(gcp)

    azure = artifact_for("azure")
    assert {"function_app.py", "host.json", "handlers/azure/function_app.py"} <= set(names(azure))
    assert defines(read(azure, "function_app.py"), "app") == {"app"}
    host = json.loads(read(azure, "host.json"))
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"


def test_layout_core_and_the_one_handler_at_the_root(artifact_for, cloud):
    files = names(artifact_for(cloud))
    assert "core/__init__.py" in files and "core/engine/slice.py" in files
    assert "handlers/__init__.py" in files
    assert f"handlers/{cloud}/__init__.py" in files
    for other in set(CLOUDS) - {cloud}:
        assert not any(f.startswith(f"handlers/{other}/") for f in files), other
    assert not any(f.startswith("handlers/cli/") for f in files)


def test_no_emulator_no_tests_no_byte_code_no_scripts(artifact_for, cloud):
    for name in names(artifact_for(cloud)):
        parts = name.split("/")
        assert "esdb_emulator" not in parts, name
        assert not {"tests", "test"} & set(parts[:-1]), name
        assert "__pycache__" not in parts and not name.endswith((".pyc", ".pyo")), name
        assert parts[0] != "bin" and parts[0] != ".lock", name
        assert not name.startswith(f"{AZURE_SITE}/bin/"), name


def test_below_the_platform_size_limit(artifact_for, cloud):
    artifact = artifact_for(cloud)
    limit = LIMITS[cloud]
    size = artifact.path.stat().st_size
    assert size == artifact.size
    with zipfile.ZipFile(artifact.path) as zf:
        unzipped = sum(i.file_size for i in zf.infolist())
    assert unzipped == artifact.unzipped_size
    if cloud == "aws":  # 50 MB zipped for a direct upload, 250 MB unzipped
        assert size < 50 * 1024 * 1024
        assert unzipped < 250 * 1024 * 1024
    else:  # GCP: 100 MB compressed sources; Azure: this project's 100 MB budget
        assert size < 100 * 1000 * 1000
    assert limit.zipped is None or size < limit.zipped
    assert limit.unzipped is None or unzipped < limit.unzipped


def test_only_that_clouds_dependencies(artifact_for):
    aws, azure = names(artifact_for("aws")), names(artifact_for("azure"))
    gcp_pins = {requirement_name(p) for p in artifact_for("gcp").requirements}
    azure = [f.removeprefix(f"{AZURE_SITE}/") for f in azure]
    for cloud, files in (("aws", aws), ("azure", azure)):
        for other, sdk in SDK_DIRS.items():
            assert any(f.startswith(sdk) for f in files) == (other == cloud), (cloud, sdk)
        # the CLI's own dependencies stay out
        for cli in ("typer/", "rich/", "click/"):
            assert not any(f.startswith(cli) for f in files), (cloud, cli)
        assert any(f.startswith("grpc/_cython/") for f in files)  # binary wheel, not sdist
        assert any(f.startswith("esdbclient/") for f in files)
    assert {"google-cloud-firestore", "google-cloud-pubsub", "functions-framework"} <= gcp_pins
    assert not gcp_pins & {"boto3", "botocore", "azure-core", "typer", "rich"}
    assert {"grpcio", "protobuf", "esdbclient", "pydantic", "pyyaml"} <= gcp_pins


def test_pins_hold_the_constraints(artifact_for, cloud):
    pins = dict(p.split("==", 1) for p in artifact_for(cloud).requirements)
    assert pins["grpcio"].startswith("1.71.")
    assert int(pins["protobuf"].split(".")[0]) < 6
    assert pins["esdbclient"] == "1.1.7"
    if cloud != "aws":
        listed = read(artifact_for(cloud), "requirements.txt").splitlines()
        assert [line for line in listed if not line.startswith("#")] == sorted(
            (f"{n}=={v}" for n, v in pins.items()), key=requirement_name
        )


def test_records_list_only_what_the_zip_holds(artifact_for):
    for cloud, prefix in (("aws", ""), ("azure", f"{AZURE_SITE}/")):
        artifact = artifact_for(cloud)
        files = set(names(artifact))
        records = [f for f in files if f.endswith(".dist-info/RECORD")]
        assert records
        for record in records:
            for line in read(artifact, record).splitlines():
                path = line.split(",", 1)[0]
                assert prefix + path in files, (record, path)


def test_entries_are_sorted_with_fixed_times_and_modes(artifact_for, cloud):
    with zipfile.ZipFile(artifact_for(cloud).path) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} <= {0o100644, 0o100755}


@pytest.mark.parametrize("rebuilt_cloud", CLOUDS)
def test_building_twice_gives_the_same_bytes(artifact_for, rebuilt_cloud, tmp_path):
    first = artifact_for(rebuilt_cloud)
    second = build(rebuilt_cloud, tmp_path)
    assert second.path.name == first.path.name
    digest = [hashlib.sha256(a.path.read_bytes()).hexdigest() for a in (first, second)]
    assert digest[0] == digest[1]


def elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF"
    return int.from_bytes(data[18:20], "little")


def test_arm64_lambda_zip_carries_aarch64_wheels(artifact_for):
    arm = artifact_for("aws", "arm64")
    assert arm.path.name.endswith("-arm64.zip")
    with zipfile.ZipFile(arm.path) as zf:
        so = [n for n in zf.namelist() if n.startswith("grpc/_cython/") and n.endswith(".so")]
        assert so and all("aarch64" in n for n in so), so
        assert elf_machine(zf.read(so[0])) == 183  # EM_AARCH64
    with zipfile.ZipFile(artifact_for("aws").path) as zf:
        so = [n for n in zf.namelist() if n.startswith("grpc/_cython/") and n.endswith(".so")]
        assert so and all("x86_64" in n for n in so), so
        assert elf_machine(zf.read(so[0])) == 62  # EM_X86_64


# ---------------------------------------------------------------------------------------------
# Importing from the zip alone


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory) -> Path:
    """A virtualenv without pip or site-packages of its own, on a CPython 3.11 (the target)."""
    if sys.version_info[:2] == (3, 11):
        base = sys.executable  # venv builds on this venv's base interpreter, not on .venv
    else:
        base = shutil.which("python3.11") or pytest.skip("no CPython 3.11 to import the zips")
    venv = tmp_path_factory.mktemp("bare-venv")
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    return venv / "bin" / "python"


# Run inside the bare virtualenv: import the entry module with only the given folders in front
# of the standard library, then prove nothing came from anywhere else.
PROBE = r"""
import importlib, importlib.util, json, sys, sysconfig
paths, module, attrs, own_imports = json.loads(sys.argv[1])
sys.path[:0] = paths
assert not any(".venv" in p for p in sys.path), sys.path
m = importlib.import_module(module)
missing = [a for a in attrs if getattr(m, a, None) is None]
assert not missing, missing
stdlib = sysconfig.get_paths()["stdlib"]
stray = sorted(
    f"{name}: {mod.__file__}" for name, mod in list(sys.modules.items())
    if getattr(mod, "__file__", None)
    and not any(mod.__file__.startswith(p) for p in paths)
    and not mod.__file__.startswith(stdlib)
)
assert not stray, stray
unresolved = sorted(n for n in own_imports if importlib.util.find_spec(n) is None)
assert not unresolved, f"imported by the packaged code but not in the artifact: {unresolved}"
for absent in ("esdb_emulator", "typer", "rich"):
    assert importlib.util.find_spec(absent) is None, f"{absent} is importable"
extra = {}
if module == "function_app":
    extra["functions"] = sorted(f.get_function_name() for f in m.app.get_functions())
print(json.dumps({"file": m.__file__, **extra}))
"""


def imported_top_level_modules(tree: Path) -> list[str]:
    """Every non-stdlib top-level module the packaged project code imports, anywhere in it."""
    found: set[str] = set()
    shims = [tree / "main.py", tree / "function_app.py"]  # gcp, azure (aws has deps at the root)
    own = [*tree.glob("core/**/*.py"), *tree.glob("handlers/**/*.py")]
    for path in own + [p for p in shims if p.is_file()]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return sorted(found - set(sys.stdlib_module_names) - {"__future__"})


def run_probe(python: Path, paths: list[Path], module: str, attrs: list[str], tree: Path) -> dict:
    args = json.dumps([[str(p) for p in paths], module, attrs, imported_top_level_modules(tree)])
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tree), "LANG": "C.UTF-8"}
    done = subprocess.run(
        [str(python), "-I", "-W", "ignore::FutureWarning", "-c", PROBE, args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@linux_x86_64
def test_aws_zip_imports_in_a_bare_virtualenv(unpacked_for, bare_python):
    tree = unpacked_for("aws")
    found = run_probe(bare_python, [tree], "handlers.aws.lambda_function", ["handler"], tree)
    assert found["file"] == str(tree / "handlers" / "aws" / "lambda_function.py")


@linux_x86_64
def test_azure_zip_imports_in_a_bare_virtualenv(unpacked_for, bare_python):
    tree = unpacked_for("azure")
    paths = [tree, tree / AZURE_SITE]
    found = run_probe(bare_python, paths, "function_app", ["app"], tree)
    assert found["file"] == str(tree / "function_app.py")
    assert found["functions"] == ["chained", "manual", "scheduled"]


@linux_x86_64
def test_gcp_zip_imports_after_installing_its_requirements(unpacked_for, bare_python, tmp_path):
    tree = unpacked_for("gcp")
    site = tmp_path / "site-packages"  # what Cloud Build installs, from requirements.txt alone
    subprocess.run(
        [
            find_uv(),
            "pip",
            "install",
            "--quiet",
            "--target",
            str(site),
            "--requirements",
            str(tree / "requirements.txt"),
            "--python-version",
            "3.11",
        ],
        check=True,
        timeout=600,
    )
    found = run_probe(bare_python, [tree, site], "main", ["on_event", "on_http"], tree)
    assert found["file"] == str(tree / "main.py")


# ---------------------------------------------------------------------------------------------
# The dependency set and the command


def test_runtime_set_is_base_minus_cli_plus_the_extra():
    for cloud in CLOUDS:
        required = {requirement_name(r) for r in runtime_requirements(ROOT, cloud)}
        assert not required & CLI_ONLY
        assert {"esdbclient", "grpcio", "protobuf", "pydantic", "pyyaml", "tenacity"} <= required
    assert "boto3" in {requirement_name(r) for r in runtime_requirements(ROOT, "aws")}
    without = runtime_requirements(ROOT, "aws", aws_sdk=False)
    assert "boto3" not in {requirement_name(r) for r in without}


def test_core_and_handlers_import_none_of_the_cli_only_dependencies():
    """What keeps typer and rich out of the zips honest."""
    cli_modules = {"typer", "rich", "esdb_emulator", "click"}
    for folder in ("core", "handlers/aws", "handlers/gcp", "handlers/azure"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    used = {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    used = {node.module.split(".")[0]}
                else:
                    continue
                assert not used & cli_modules, f"{path}: imports {used & cli_modules}"


def test_host_json_comes_from_infra_azure_when_it_exists(tmp_path):
    generated = json.loads(packaging._host_json(tmp_path))
    assert generated["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    assert generated["extensions"]["queues"]["messageEncoding"] == "base64"
    assert generated["functionTimeout"] == "00:10:00"
    (tmp_path / "infra" / "azure").mkdir(parents=True)
    (tmp_path / "infra" / "azure" / "host.json").write_text('{"version": "2.0", "x": 1}\n')
    assert json.loads(packaging._host_json(tmp_path)) == {"version": "2.0", "x": 1}
    (tmp_path / "infra" / "azure" / "host.json").write_text("{not json")
    with pytest.raises(PackageError, match=r"host\.json is not valid JSON"):
        packaging._host_json(tmp_path)


def cli() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("package")(packager.package)
    return app


def invoke(*args: str):
    return CliRunner().invoke(cli(), ["package", *args], env={"COLUMNS": "400"})


def flat(text: str) -> str:
    return " ".join(text.split())


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_command_prints_the_zip_its_size_and_the_next_step(tmp_path):
    result = invoke("gcp", "--output", str(tmp_path))
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    zip_path = tmp_path / "esdb-relay-gcp-0.1.0.zip"
    assert zip_path.is_file()
    assert "esdb-relay-gcp-0.1.0.zip" in out
    assert re.search(r"size: [\d.]+ MiB zipped", out)
    assert f"terraform -chdir=infra/gcp apply -var source_zip={zip_path.resolve()}" in out
    assert leftovers(tmp_path) == ["esdb-relay-gcp-0.1.0.zip"]


def test_unknown_cloud_is_a_clear_error(tmp_path):
    result = invoke("openstack", "--output", str(tmp_path))
    assert result.exit_code == 2
    assert "unknown cloud 'openstack': choose aws, gcp or azure" in flat(result.output)
    assert leftovers(tmp_path) == []


def test_arm64_is_for_aws_only(tmp_path):
    result = invoke("azure", "--platform", "arm64", "--output", str(tmp_path))
    assert result.exit_code == 2
    assert "arm64 is for aws" in flat(result.output)


def test_network_unavailable_is_named_and_leaves_no_zip(tmp_path):
    # a closed local port stands in for an unreachable index
    result = invoke("aws", "--output", str(tmp_path), "--index-url", "http://127.0.0.1:9/simple")
    assert result.exit_code == 2
    out = flat(result.output)
    assert "network unavailable" in out and "http://127.0.0.1:9/simple" in out
    assert "uv pip compile" in out
    assert leftovers(tmp_path) == []


def test_a_failing_resolution_shows_uvs_message(tmp_path):
    result = invoke("gcp", "--output", str(tmp_path), "--python-version", "3.8")
    assert result.exit_code == 2
    out = flat(result.output)
    assert "uv failed" in out and "No solution found" in out and "esdbclient" in out
    assert leftovers(tmp_path) == []


def test_over_the_size_limit_fails_and_keeps_no_zip(tmp_path, monkeypatch):
    monkeypatch.setitem(LIMITS, "gcp", packaging.Limit(zipped=1000, unzipped=None, source="t"))
    with pytest.raises(PackageError, match=r"over the 0\.0 MiB limit"):
        build("gcp", tmp_path)
    assert leftovers(tmp_path) == []


def test_a_write_that_breaks_midway_leaves_nothing_behind(tmp_path, monkeypatch):
    real_copy = shutil.copyfileobj
    copied = 0

    def flaky(src, dst, length=0):
        nonlocal copied
        copied += 1
        if copied == 5:
            raise OSError("disk full")
        real_copy(src, dst, length)

    monkeypatch.setattr(packaging.shutil, "copyfileobj", flaky)
    with pytest.raises(OSError, match="disk full"):
        build("gcp", tmp_path)
    assert leftovers(tmp_path) == []
    # a zip already there is left as it was
    (tmp_path / "esdb-relay-gcp-0.1.0.zip").write_bytes(b"previous")
    copied = 0
    with pytest.raises(OSError, match="disk full"):
        build("gcp", tmp_path)
    assert leftovers(tmp_path) == ["esdb-relay-gcp-0.1.0.zip"]
    assert (tmp_path / "esdb-relay-gcp-0.1.0.zip").read_bytes() == b"previous"


def test_no_uv_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "uv", None)
    monkeypatch.setattr(packaging.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PackageError, match="uv not found"):
        find_uv()


def test_zip_file_is_readable_by_others(artifact_for):
    mode = artifact_for("gcp").path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_aws_next_step_follows_the_templates_code_uri(tmp_path):
    (tmp_path / "infra" / "aws").mkdir(parents=True)
    template = tmp_path / "infra" / "aws" / "template.yaml"
    built = tmp_path / "dist" / "esdb-relay-aws-0.1.0.zip"

    def steps(code_uri: str, platform: str = "x86_64") -> list[str]:
        template.write_text(
            "Resources:\n  Fn:\n    Properties:\n"
            f"      CodeUri: {code_uri}\n      Runtime: python3.11\n"
            "      Architectures: [x86_64]\n"
        )
        artifact = Artifact("aws", built, 1, 1, 1, platform=platform)
        return packager.next_steps(artifact, tmp_path)

    same = steps("../../dist/esdb-relay-aws-0.1.0.zip")
    assert same == [f"sam deploy --template-file {packager._shown(template)} --guided"]
    other = steps("../../dist/esdb-relay-aws.zip")
    assert other[0] == (
        f"cp {packager._shown(built)} {packager._shown(tmp_path / 'dist' / 'esdb-relay-aws.zip')}"
    )
    assert other[-1].startswith("sam deploy")
    arm = steps("../../dist/esdb-relay-aws-0.1.0.zip", platform="arm64")
    assert any("Architectures is [x86_64]: this zip is arm64" in s for s in arm)


DOC_TOLERANCE = 0.10  # relative; and at least 0.2 MiB, for the GCP zip's few hundred KiB
DOC_SIZE = re.compile(r"([\d.]+) MiB zipped, ([\d.]+) MiB unzipped")


def documented_sizes() -> dict[str, tuple[float, float]]:
    """(zipped, unzipped) MiB per cloud from the "today" column of docs/packaging.md."""
    found = {}
    for line in (ROOT / "docs" / "packaging.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in CLOUDS and (size := DOC_SIZE.search(cells[3])):
            found[cells[0]] = (float(size.group(1)), float(size.group(2)))
    return found


def test_documented_sizes_match_the_build(artifact_for, cloud):
    documented = documented_sizes()
    assert set(documented) == set(CLOUDS), documented
    artifact = artifact_for(cloud)
    built = (artifact.size / 2**20, artifact.unzipped_size / 2**20)
    for what, doc, real in zip(("zipped", "unzipped"), documented[cloud], built, strict=True):
        slack = max(0.2, DOC_TOLERANCE * real)
        assert abs(doc - real) <= slack, (
            f"docs/packaging.md says the {cloud} zip is {doc} MiB {what}; the build is "
            f"{real:.1f} MiB: update the table"
        )

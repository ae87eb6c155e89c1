"""`esdb-relay package <cloud>`: build the deployable zip (packaging.py) and say what to do
with it next."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from rich.console import Console

from handlers.cli.packaging import LIMITS, Artifact, PackageError, build, mb, project_root


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path.resolve())


def _template_value(template: Path, key: str) -> str | None:
    if not template.is_file():
        return None
    found = re.search(rf"^\s*{key}:\s*['\"]?([^'\"\s#]+)", template.read_text(), re.M)
    return found.group(1) if found else None


def next_steps(artifact: Artifact, root: Path) -> list[str]:
    """The commands that deploy this zip with the templates under infra/<cloud>/."""
    zip_path = artifact.path.resolve()
    infra = root / "infra" / artifact.cloud
    if artifact.cloud == "aws":
        template = infra / "template.yaml"
        steps = []
        code_uri = _template_value(template, "CodeUri")
        if code_uri and (infra / code_uri).resolve() != zip_path:
            # the template names one fixed path; put this build there
            steps.append(f"cp {_shown(zip_path)} {_shown(infra / code_uri)}")
        runtime = f"python{artifact.python_version}"
        if (found := _template_value(template, "Runtime")) and found != runtime:
            steps.append(f"# the template's Runtime is {found}: this zip is for {runtime}")
        arch = "arm64" if artifact.platform in {"arm64", "aarch64"} else "x86_64"
        architectures = _template_value(template, "Architectures") or ""
        if architectures and arch not in architectures:
            steps.append(f"# the template's Architectures is {architectures}: this zip is {arch}")
        steps.append(f"sam deploy --template-file {_shown(template)} --guided")
        return steps
    if artifact.cloud == "gcp":
        runtime = "python" + artifact.python_version.replace(".", "")
        return [
            f"terraform -chdir={_shown(infra)} apply -var source_zip={zip_path} "
            f"-var runtime={runtime}"
        ]
    return [
        f"terraform -chdir={_shown(infra)} apply",
        "az functionapp deployment source config-zip --resource-group <resource-group> "
        f"--name <function-app> --src {zip_path}",
    ]


def package(
    cloud: str = typer.Argument(..., help="aws, gcp or azure"),
    output: Path = typer.Option(Path("dist"), "--output", "-o", help="Folder for the zip."),
    python_version: str = typer.Option(
        "3.11", "--python-version", help="CPython version of the function runtime."
    ),
    platform: str = typer.Option(
        "x86_64", "--platform", help="x86_64, or arm64 for a Graviton Lambda (aws only)."
    ),
    aws_sdk: bool = typer.Option(
        True,
        "--aws-sdk/--no-aws-sdk",
        help="aws: ship a pinned boto3 instead of relying on the one in the Lambda runtime.",
    ),
    pin_env: bool = typer.Option(
        True,
        "--pin-env/--no-pin-env",
        help="Pin dependencies to the versions installed here (the tested set).",
    ),
    exclude_newer: str | None = typer.Option(
        None,
        "--exclude-newer",
        help="Resolve only releases published before this date (RFC 3339), for reproducibility.",
    ),
    index_url: str | None = typer.Option(
        None, "--index-url", help="Package index to download from (default: PyPI)."
    ),
) -> None:
    """Build the deployable zip for one cloud and print the next deploy command."""
    console = Console()
    err = Console(stderr=True)
    try:
        with err.status(f"packaging esdb-relay for {cloud} …"):
            artifact = build(
                cloud,
                output,
                python_version=python_version,
                platform=platform,
                aws_sdk=aws_sdk,
                pin_env=pin_env,
                exclude_newer=exclude_newer,
                index_url=index_url,
            )
    except PackageError as e:
        err.print(f"[red]packaging failed:[/] {e}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    limit = LIMITS[cloud]
    console.print(f"built {_shown(artifact.path)}", highlight=False)
    console.print(
        f"size: {mb(artifact.size)} zipped, {mb(artifact.unzipped_size)} unzipped, "
        f"{artifact.files} files (limit: {limit.source})",
        highlight=False,
    )
    console.print(
        f"dependencies ({len(artifact.requirements)}): " + ", ".join(artifact.requirements),
        highlight=False,
    )
    for warning in artifact.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print("next:", highlight=False)
    for line in next_steps(artifact, project_root()):
        console.print(f"  {line}", highlight=False, soft_wrap=True)

"""docs/deploy-*.md against the templates, offline: every name a command or table in them uses
is one the templates, the handlers or the CLI really have.

- AWS: every `ParameterKey`-like name in the parameter table and every stack output a command
  reads exists in infra/aws/template.yaml;
- GCP, Azure: every `terraform output NAME` exists, and every variable named in the docs'
  variable tables exists in variables.tf;
- every test the docs name exists where they say, and a test they call an expected failure is
  marked xfail (a doc that says so of a passing test contradicts the code);
- every `esdb-relay` subcommand the docs run is one the CLI has;
- every parameter (AWS) or variable (GCP, Azure) of a template is named in its doc.

The cloud CLIs' commands are checked in test_deploy_commands.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import hcl2
import pytest
from cfnlint.decode import cfn_yaml
from hcl2 import SerializationOptions
from typer.main import get_command

from handlers.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = {cloud: ROOT / "docs" / f"deploy-{cloud}.md" for cloud in ("aws", "gcp", "azure")}


def fenced(text: str) -> list[str]:
    """The lines of every fenced code block."""
    return [
        line
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
        for line in block.splitlines()
    ]


def terraform_names(cloud: str, kind: str) -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "infra" / cloud).glob("*.tf"):
        options = SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
        for block in hcl2.loads(path.read_text(), serialization_options=options).get(kind, []):
            names.update(block)
    return names


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_every_terraform_output_the_docs_read_exists(cloud: str) -> None:
    text = DOCS[cloud].read_text()
    used = set(re.findall(r"terraform(?: -chdir=\S+)? output(?: -raw| -json)? (\w+)", text))
    assert used, "the parser found no terraform output command"
    assert used <= terraform_names(cloud, "output"), used - terraform_names(cloud, "output")


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_every_variable_in_the_docs_tables_exists(cloud: str) -> None:
    variables = terraform_names(cloud, "variable")
    named: set[str] = set()
    header = ""
    for line in DOCS[cloud].read_text().splitlines():
        if not line.startswith("|"):
            header = ""
        elif not header:
            header = line
        elif header.startswith("| variable") and line.startswith("| `"):
            named.update(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    named |= set(re.findall(r"-var (\w+)=", DOCS[cloud].read_text()))
    assert named, "the parser found no variable"
    assert named <= variables, sorted(named - variables)


def test_every_aws_parameter_and_output_the_docs_use_exists() -> None:
    template = cfn_yaml.load(str(ROOT / "infra" / "aws" / "template.yaml"))
    text = DOCS["aws"].read_text()
    named: set[str] = set()
    header = ""
    for line in text.splitlines():
        if not line.startswith("|"):
            header = ""
        elif not header:
            header = line
        elif header.startswith("| parameter") and line.startswith("| `"):
            named.update(re.findall(r"`([A-Z][A-Za-z]+)`", line.split("|")[1]))
    assert named, "the parser found no parameter"
    assert named <= set(template["Parameters"]), sorted(named - set(template["Parameters"]))
    outputs = set(re.findall(r"OutputKey=='(\w+)'", text)) | set(
        re.findall(r"output `(\w+)`", text)
    )
    assert outputs <= set(template["Outputs"]), sorted(outputs - set(template["Outputs"]))


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_every_input_of_the_template_is_in_its_doc(cloud: str) -> None:
    """The other way round: a parameter or variable the doc never names is one an operator
    cannot know to set (a new one added without its doc)."""
    text = DOCS[cloud].read_text()
    if cloud == "aws":
        inputs = set(cfn_yaml.load(str(ROOT / "infra" / "aws" / "template.yaml"))["Parameters"])
    else:
        inputs = terraform_names(cloud, "variable")
    assert inputs
    assert not sorted(i for i in inputs if f"`{i}`" not in text)


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_tests_the_docs_name_exist_and_are_what_the_docs_say(cloud: str) -> None:
    text = DOCS[cloud].read_text()
    for path in re.findall(r"`(tests/[\w/]+\.py)`", text):
        assert (ROOT / path).is_file(), path
    for name, path in re.findall(r"`(test_\w+)`[\s>]+in[\s>]+`(tests/[\w/]+\.py)`", text):
        source = (ROOT / path).read_text()
        assert f"def {name}(" in source, f"{path} has no {name}"
        said_xfail = re.search(rf"expected-failure test `{name}`", text) is not None
        marked = re.search(rf"@pytest\.mark\.xfail[^\n]*\n(?:@[^\n]*\n)*def {name}\(", source)
        assert said_xfail == bool(marked), f"{name}: the docs and the test disagree on xfail"


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_every_esdb_relay_command_the_docs_run_exists(cloud: str) -> None:
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    used = {
        m.group(1)
        for line in fenced(DOCS[cloud].read_text())
        if (m := re.match(r"\s*esdb-relay (\w[\w-]*)", line))
    }
    assert used <= commands, sorted(used - commands)

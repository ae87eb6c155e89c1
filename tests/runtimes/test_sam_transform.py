"""infra/aws/template.yaml through AWS SAM's own transform, then cfn-lint on what comes out.

`sam deploy` uploads the zip, rewrites CodeUri to its S3 location and hands the template to
CloudFormation, which runs the AWS::Serverless-2016-10-31 transform (aws-sam-translator). This
test does the same offline: CodeUri becomes an S3 URI as `sam deploy` writes it, the sample
samconfig's parameters (its peered [default] and public environments) are the parameter values,
aws-sam-translator (in .venv-sam) transforms it, and cfn-lint checks the plain CloudFormation
template that results (errors and warnings).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from tests.runtimes.conftest import ROOT, runtime_python

TEMPLATE = ROOT / "infra" / "aws" / "template.yaml"
SAMPLE = ROOT / "infra" / "aws" / "samconfig.example.toml"
SCRIPT = Path(__file__).with_name("sam_transform.py")
CFN_LINT = Path(sys.executable).with_name("cfn-lint")


def sample_parameters(config_env: str = "default") -> dict[str, str]:
    spec = importlib.util.spec_from_file_location(
        "aws_check_parameters", ROOT / "infra" / "aws" / "check_parameters.py"
    )
    assert spec and spec.loader
    checker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checker)
    return checker.read_samconfig(SAMPLE, config_env)


def sam_transform(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [str(runtime_python(".venv-sam")), "-I", str(SCRIPT)],
        input=json.dumps({"template": template, "parameters": parameters}, default=str),
        capture_output=True,
        text=True,
        timeout=120,
        # The region `sam deploy` runs in (the sample's); no credentials: nothing is called.
        env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "eu-west-1"},
    )
    assert done.returncode == 0, f"SAM refused the template: {done.stderr}"
    return json.loads(done.stdout)


def deployed_form() -> dict[str, Any]:
    """The template as `sam deploy` sends it: CodeUri rewritten to the uploaded zip in S3."""
    template = json.loads(json.dumps(cfn_yaml.load(str(TEMPLATE)), default=str))
    function = template["Resources"]["RelayFunction"]["Properties"]
    assert function["CodeUri"].endswith(".zip")
    function["CodeUri"] = "s3://aws-sam-cli-managed-default-samclisourcebucket/0123abcd"
    return template


@pytest.fixture(scope="module", params=["default", "public"])
def transformed(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The sample's two topologies: peered ([default]) and public ([public], NAT gateway)."""
    return sam_transform(deployed_form(), sample_parameters(request.param))


def test_sam_transforms_the_template_into_plain_cloudformation(transformed):
    assert "Transform" not in transformed
    types = {r["Type"] for r in transformed["Resources"].values()}
    assert not any(t.startswith("AWS::Serverless::") for t in types)
    assert {"AWS::Lambda::Function", "AWS::Lambda::EventInvokeConfig"} <= types
    # the NAT pieces pass through the transform with their condition
    assert {"AWS::EC2::EIP", "AWS::EC2::NatGateway", "AWS::EC2::Route"} <= types
    assert transformed["Resources"]["NatGateway"]["Condition"] == "PublicNetwork"
    function = transformed["Resources"]["RelayFunction"]["Properties"]
    assert function["Handler"] == "handlers.aws.lambda_function.handler"
    assert function["Code"] == {
        "S3Bucket": "aws-sam-cli-managed-default-samclisourcebucket",
        "S3Key": "0123abcd",
    }


def test_cfn_lint_passes_on_the_transformed_template(transformed, tmp_path):
    out = tmp_path / "transformed.json"
    out.write_text(json.dumps(transformed, indent=1))
    done = subprocess.run(
        [str(CFN_LINT), "--format", "parseable", "--non-zero-exit-code", "warning", "--", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr

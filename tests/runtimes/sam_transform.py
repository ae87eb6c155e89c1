"""AWS SAM's own transform of a template, run with .venv-sam's Python (aws-sam-translator).

`python sam_transform.py` reads {"template": {...}, "parameters": {...}} as JSON on stdin and
writes the CloudFormation template the AWS::Serverless-2016-10-31 transform produces, as JSON on
stdout; a template SAM refuses exits 1 with SAM's message on stderr. The template's intrinsics
are in their long form (cfn-lint's YAML loader in the test turns `!Ref` into `{"Ref": ...}`).

Not run here: IAM's list of managed policies, which SAM reads only for policy names in a
function's `Policies` (the template gives the function a `Role` instead), so the loader is
empty and fails the transform if SAM ever asks it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import boto3
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform


class NoManagedPolicies(ManagedPolicyLoader):
    def __init__(self) -> None:
        super().__init__(boto3.client("iam", region_name="us-east-1"))

    def load(self) -> dict[str, str]:
        raise RuntimeError("the template asked SAM for managed policies: give them as ARNs")


def main() -> int:
    request: dict[str, Any] = json.load(sys.stdin)
    try:
        output = transform(request["template"], request["parameters"], NoManagedPolicies())
    except InvalidDocumentException as e:
        print("\n".join(str(cause) for cause in e.causes), file=sys.stderr)
        return 1
    json.dump(output, sys.stdout, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())

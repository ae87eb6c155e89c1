"""Offline checks of infra/aws/template.yaml, the SAM deployment of one relay job.

What runs: cfn-lint (errors and warnings fail); checkov with zero failed checks other than ones
suppressed in the template with a written reason; structural tests on the template parsed by
cfn-lint's own YAML loader (which reads !Ref, !Sub, !GetAtt ...); the function's environment
checked against what the handler and JobConfig read; the error-lines metric filter checked
against the JSON line core/logs.py writes (the metrics, the dashboard and their alarms:
test_aws_monitoring.py); and infra/aws/check_parameters.py (the CIDR containment that
CloudFormation cannot compute) on the sample samconfig, on broken variants and, for --aws, on an
account simulated by moto.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import io
import json
import logging
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, get_args

import pytest
from cfnlint.decode import cfn_yaml

from tests.infra.checkov import run_checkov
from tests.infra.test_preflight_settings import preflight_keys

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra" / "aws"
TEMPLATE = INFRA / "template.yaml"
SAMPLE = INFRA / "samconfig.example.toml"
HANDLER_DIR = ROOT / "handlers" / "aws"
CFN_LINT = Path(sys.executable).with_name("cfn-lint")

FUNCTION = "RelayFunction"
HANDLER = "handlers.aws.lambda_function.handler"


# --- loading ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return cfn_yaml.load(str(TEMPLATE))


@pytest.fixture(scope="module")
def checker() -> ModuleType:
    """infra/aws/check_parameters.py (infra/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "aws_check_parameters", INFRA / "check_parameters.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sample(checker: ModuleType) -> dict[str, str]:
    return checker.read_samconfig(SAMPLE)


def resources(template: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {n: r for n, r in template["Resources"].items() if r["Type"] == rtype}


def props(template: dict[str, Any], name: str) -> dict[str, Any]:
    return template["Resources"][name]["Properties"]


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """Every statement of the role's inline policies and of the RolePolicy resources on it."""
    found = [
        s
        for policy in props(template, role).get("Policies", [])
        for s in policy["PolicyDocument"]["Statement"]
    ]
    for extra in resources(template, "AWS::IAM::RolePolicy").values():
        if extra["Properties"]["RoleName"] == {"Ref": role}:
            found += extra["Properties"]["PolicyDocument"]["Statement"]
    return found


def environment(template: dict[str, Any]) -> dict[str, Any]:
    return props(template, FUNCTION)["Environment"]["Variables"]


def resolve(node: Any, values: dict[str, Any], conditions: dict[str, bool]) -> Any:
    """The value of an intrinsic-function tree, for the functions the template uses in values
    and conditions (a list parameter's value is a Python list)."""
    if isinstance(node, dict) and len(node) == 1:
        (fn, arg), *_ = node.items()
        if fn == "Ref":
            return values[arg]
        if fn == "Condition":
            return conditions[arg]
        if fn == "Fn::If":
            name, yes, no = arg
            return resolve(yes if conditions[name] else no, values, conditions)
        if fn == "Fn::Sub":
            text, local = (arg, {}) if isinstance(arg, str) else arg
            scope = {**values, **{k: resolve(v, values, conditions) for k, v in local.items()}}
            return re.sub(r"\$\{([\w:.]+)\}", lambda m: str(scope[m.group(1)]), text)
        if fn == "Fn::Join":
            separator, items = arg
            items = resolve(items, values, conditions)
            return separator.join(str(resolve(i, values, conditions)) for i in items)
        if fn == "Fn::Split":
            separator, text = arg
            return str(resolve(text, values, conditions)).split(separator)
        if fn == "Fn::Select":
            index, items = arg
            return resolve(items, values, conditions)[int(index)]
        if fn == "Fn::Equals":
            a, b = (resolve(x, values, conditions) for x in arg)
            return str(a) == str(b)
        if fn == "Fn::Not":
            return not resolve(arg[0], values, conditions)
        if fn == "Fn::And":
            return all(resolve(x, values, conditions) for x in arg)
        if fn == "Fn::Or":
            return any(resolve(x, values, conditions) for x in arg)
    return node


def evaluate_conditions(template: dict[str, Any], values: dict[str, Any]) -> dict[str, bool]:
    """Every condition of the template for these parameter values (in their order)."""
    conditions: dict[str, bool] = {}
    for name, expression in template["Conditions"].items():
        conditions[name] = bool(resolve(expression, values, conditions))
    return conditions


# --- cfn-lint ---------------------------------------------------------------------------------


def cfn_lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    if not CFN_LINT.exists():
        pytest.fail(f"cfn-lint is not installed at {CFN_LINT}: run `make setup`")
    return subprocess.run(
        # Warnings fail as well as errors: cfn-lint's warnings are real defects (unused
        # parameters, values that do not fit a property's pattern, deprecated runtimes). An
        # intended exception is suppressed on its resource with the reason next to it.
        [str(CFN_LINT), "--format", "parseable", "--non-zero-exit-code", "warning", "--"]
        + [str(p) for p in paths],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def linted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """cfn-lint's findings for the template and two broken copies, in one run (it takes seconds
    to start): {"template" | "typo" | "redundant": [finding, ...]}."""
    text = TEMPLATE.read_text()
    folder = tmp_path_factory.mktemp("cfn-lint")
    # a misspelt property of the SAM function: an error
    typo = folder / "typo.yaml"
    typo.write_text(text.replace("ReservedConcurrentExecutions:", "ReservedConcurency:", 1))
    # W3005, a DependsOn that a GetAtt already enforces: a warning, nothing more. (cfn-lint
    # skips the unused-parameter warning W2001 in SAM templates.)
    redundant = folder / "redundant.yaml"
    head = "  ChainEventSource:\n    Type: AWS::Lambda::EventSourceMapping\n"
    redundant.write_text(text.replace(head, head + "    DependsOn: ChainQueue\n", 1))
    files = {"template": TEMPLATE, "typo": typo, "redundant": redundant}
    proc = cfn_lint(*files.values())
    assert proc.returncode != 0, "cfn-lint passed the broken copies"
    assert not proc.stderr.strip(), proc.stderr
    return {
        name: [line for line in proc.stdout.splitlines() if line.startswith(f"{path}:")]
        for name, path in files.items()
    }


def test_cfn_lint_passes_without_errors_or_warnings(linted: dict[str, list[str]]) -> None:
    assert linted["template"] == []
    proc = cfn_lint(TEMPLATE)
    assert proc.returncode == 0, f"cfn-lint exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"


def test_cfn_lint_catches_a_wrong_property_and_fails_on_a_warning(
    linted: dict[str, list[str]],
) -> None:
    """The lint validates the SAM resource itself, and a warning alone is a finding."""
    assert [line.split(":")[5] for line in linted["typo"]] == ["E3002"], linted["typo"]
    assert "ReservedConcurency" in linted["typo"][0]
    assert [line.split(":")[5] for line in linted["redundant"]] == ["W3005"], linted


# --- checkov ----------------------------------------------------------------------------------


def suppressions(template: dict[str, Any]) -> dict[tuple[str, str], str]:
    """{(resource, check id): reason} of every `Metadata: checkov: skip:` in the template."""
    found = {}
    for name, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            found[(name, skip["id"])] = skip.get("comment", "")
    return found


def test_checkov_passes_with_only_reasoned_suppressions(template: dict[str, Any]) -> None:
    report = run_checkov(INFRA, "cloudformation")
    assert not report.failed, "checkov failed:\n" + "\n".join(
        f"{c.check_id} {c.resource}" for c in report.failed
    )
    in_template = suppressions(template)
    for (name, check_id), reason in in_template.items():
        assert len(reason) >= 40, f"{name} {check_id}: suppressed without a real reason"
    # checkov honoured every suppression, and none is stale (suppressing a check that no
    # longer applies would hide it if it came back).
    honoured = {(c.resource.rpartition(".")[2], c.check_id) for c in report.skipped}
    assert honoured == set(in_template)
    for c in report.skipped:
        assert c.reason and len(c.reason) >= 40, f"{c.check_id} {c.resource}: no reason"
    # checkov did read the SAM function (it is in a VPC, has a DLQ and a concurrency limit).
    function_checks = {
        c.check_id for c in report.passed if c.resource == f"AWS::Serverless::Function.{FUNCTION}"
    }
    assert {"CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_45"} <= function_checks


def test_checkov_fails_what_the_suppressions_and_settings_prevent(tmp_path: Path) -> None:
    """Without the table's point-in-time recovery and the chain queue's suppression, checkov
    reports both: the zero-failures result above is earned, not an empty scan."""
    text = TEMPLATE.read_text()
    text = text.replace(
        "      PointInTimeRecoverySpecification: {PointInTimeRecoveryEnabled: true}\n", "", 1
    )
    head = "  ChainQueue:\n    Type: AWS::SQS::Queue\n"
    start = text.index(head)
    metadata = text.index("    Metadata:\n", start)
    properties = text.index("    Properties:\n", start)
    text = text[:metadata] + text[properties:]
    (tmp_path / "template.yaml").write_text(text)
    report = run_checkov(tmp_path, "cloudformation")
    failed = {(c.resource, c.check_id) for c in report.failed}
    assert failed == {
        ("AWS::DynamoDB::Table.CheckpointTable", "CKV_AWS_28"),
        ("AWS::SQS::Queue.ChainQueue", "CKV_AWS_27"),
    }


# --- the function and its artifact -----------------------------------------------------------


def test_handler_runtime_and_code_match_the_packaged_artifact(template: dict[str, Any]) -> None:
    from handlers.cli import package as packager
    from handlers.cli.packaging import zip_name as packaged_name

    function = props(template, FUNCTION)
    assert function["Handler"] == HANDLER
    # the entry point exists where the handler string points, as a module-level function
    module, _, name = HANDLER.rpartition(".")
    source = ROOT / (module.replace(".", "/") + ".py")
    tree = ast.parse(source.read_text())
    assert name in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    # the zip `esdb-relay package aws` builds by default: its CPython, platform and file name
    defaults = {
        key: getattr(param.default, "default", param.default)
        for key, param in inspect.signature(packager.package).parameters.items()
    }
    assert function["Runtime"] == f"python{defaults['python_version']}"
    assert function["Architectures"] == [defaults["platform"]]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    zip_name = packaged_name("aws", version, defaults["platform"])
    code = (INFRA / function["CodeUri"]).resolve()
    assert code == (ROOT / defaults["output"] / zip_name).resolve(), (
        f"CodeUri {function['CodeUri']} is not the zip `esdb-relay package aws` builds "
        f"({defaults['output']}/{zip_name}): update it after a version bump"
    )


def test_function_runs_in_the_private_subnets_with_its_own_security_group(
    template: dict[str, Any],
) -> None:
    vpc = props(template, FUNCTION)["VpcConfig"]
    assert vpc["SubnetIds"] == {"Ref": "SubnetIds"}
    assert vpc["SecurityGroupIds"] == [{"Ref": "FunctionSecurityGroup"}]
    assert template["Parameters"]["SubnetIds"]["Type"] == "List<AWS::EC2::Subnet::Id>"
    sg = props(template, "FunctionSecurityGroup")
    assert sg["VpcId"] == {"Ref": "VpcId"}


def test_reserved_concurrency_is_a_parameter_one_by_default(template: dict[str, Any]) -> None:
    """New accounts cannot reserve concurrency (unreserved must stay >= 100): "none" then."""
    parameter = template["Parameters"]["ReservedConcurrency"]
    assert parameter["Default"] == "1" and parameter["AllowedValues"] == ["1", "none"]
    assert "below 100" in parameter["Description"]
    assert template["Conditions"]["ReserveConcurrency"] == {
        "Fn::Equals": [{"Ref": "ReservedConcurrency"}, "1"]
    }
    assert props(template, FUNCTION)["ReservedConcurrentExecutions"] == {
        "Fn::If": [
            "ReserveConcurrency",
            {"Fn::FindInMap": ["ShardConcurrency", {"Ref": "Shards"}, "Reserved"]},
            {"Ref": "AWS::NoValue"},
        ]
    }


def test_shards_deploy_a_chain_each_with_reserved_concurrency_for_all_and_the_tick(
    template: dict[str, Any],
) -> None:
    """One setting (Shards, ESDB_RELAY_SHARDS) deploys K chains: the reserved concurrency
    leaves room for every shard's chain and the schedule's tick (K + 1; 1 for one chain)."""
    from core.config import JobConfig
    from core.shards import MAX_SHARDS

    shards = template["Parameters"]["Shards"]
    bounds = {type(m).__name__: m for m in JobConfig.model_fields["shards"].metadata}
    assert (shards["MinValue"], shards["MaxValue"]) == (bounds["Ge"].ge, bounds["Le"].le)
    assert shards["MaxValue"] == MAX_SHARDS and shards["Default"] == 1
    assert "global order is NOT kept across shards" in shards["Description"]
    env = props(template, FUNCTION)["Environment"]["Variables"]
    assert env["ESDB_RELAY_SHARDS"] == {"Ref": "Shards"}
    table = template["Mappings"]["ShardConcurrency"]
    assert set(table) == {str(k) for k in range(1, MAX_SHARDS + 1)}
    assert table["1"]["Reserved"] == 1
    assert all(table[str(k)]["Reserved"] >= k + 1 for k in range(2, MAX_SHARDS + 1))


def test_a_failed_chain_message_is_retried_and_parked_in_step_with_the_timeout(
    template: dict[str, Any],
) -> None:
    """For every function timeout the template allows: a message is not delivered again while
    its slice may still run, a failure comes back soon after, and a message that keeps failing
    reaches the dead-letter queue within two hours (it took 7.5 h with a fixed 90 minutes)."""
    queue = props(template, "ChainQueue")
    timing = template["Mappings"]["ChainTiming"]
    assert queue["VisibilityTimeout"] == {
        "Fn::FindInMap": ["ChainTiming", {"Ref": "FunctionTimeout"}, "VisibilityTimeout"]
    }
    assert queue["RedrivePolicy"]["maxReceiveCount"] == {
        "Fn::FindInMap": ["ChainTiming", {"Ref": "FunctionTimeout"}, "MaxReceiveCount"]
    }
    allowed = template["Parameters"]["FunctionTimeout"]["AllowedValues"]
    assert sorted(int(k) for k in timing) == sorted(allowed)
    for timeout in allowed:
        row = timing[str(timeout)]
        assert timeout < row["VisibilityTimeout"] <= timeout + 120
        assert 3 <= row["MaxReceiveCount"] <= 10
        assert row["VisibilityTimeout"] * row["MaxReceiveCount"] <= 2 * 3600


def test_schedule_triggers_the_function_with_an_empty_payload(template: dict[str, Any]) -> None:
    schedules = resources(template, "AWS::Scheduler::Schedule")
    assert list(schedules) == ["SliceSchedule"]
    schedule = schedules["SliceSchedule"]["Properties"]
    assert schedule["ScheduleExpression"] == {"Ref": "Schedule"}
    assert schedule["State"] == {"Ref": "ScheduleState"}
    target = schedule["Target"]
    assert target["Arn"] == {"Fn::GetAtt": [FUNCTION, "Arn"]}
    assert json.loads(target["Input"]) == {}
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["InvokeDeadLetterQueue", "Arn"]}
    # the schedule's role may invoke this function and nothing else
    role = target["RoleArn"]["Fn::GetAtt"][0]
    invoke = [
        s for s in statements(template, role) if "lambda:InvokeFunction" in as_list(s["Action"])
    ]
    assert [s["Resource"] for s in invoke] == [{"Fn::GetAtt": [FUNCTION, "Arn"]}]
    trust = props(template, role)["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "scheduler.amazonaws.com"}]


@pytest.mark.parametrize(
    ("expression", "valid"),
    [
        ("rate(5 minutes)", True),
        ("rate(1 minute)", True),
        ("rate(2 hours)", True),
        ("rate(1 day)", True),
        ("cron(0/10 * * * ? *)", True),
        ("rate(1 minutes)", False),  # Scheduler wants the singular for 1
        ("rate(0 minutes)", False),
        ("rate(5 seconds)", False),
        ("cron(0/10 * * * ?)", False),  # five fields: Scheduler's cron has six
        ("at(2026-12-01T00:00:00)", False),  # one-time: the relay needs a recurring trigger
        ("every 5 minutes", False),
    ],
)
def test_schedule_parameter_accepts_recurring_scheduler_expressions_only(
    template: dict[str, Any], expression: str, valid: bool
) -> None:
    pattern = template["Parameters"]["Schedule"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, expression)) is valid


def test_no_public_ingress_and_no_open_egress(template: dict[str, Any]) -> None:
    """Nothing accepts connections from an address range. Egress to any address exists only in
    the public topology, to the cluster's port (a public cluster's nodes change addresses)."""
    open_ranges = ["0.0.0.0/0", "::/0"]
    for name, sg in resources(template, "AWS::EC2::SecurityGroup").items():
        for rule in sg["Properties"].get("SecurityGroupIngress", []):
            assert rule.get("CidrIp") not in open_ranges, name
            assert rule.get("CidrIpv6") not in open_ranges, name
            assert "SourceSecurityGroupId" in rule, f"{name}: ingress from an address range"
        for rule in sg["Properties"].get("SecurityGroupEgress", []):
            destination = rule.get("CidrIp")
            if isinstance(destination, dict) and "Fn::If" in destination:  # public only
                assert destination == {
                    "Fn::If": ["PublicNetwork", "0.0.0.0/0", {"Ref": "PeeringCidr"}]
                }, name
                assert "EsdbPortRange" in json.dumps(rule["FromPort"]), name
                assert "EsdbPortRange" in json.dumps(rule["ToPort"]), name
            else:
                assert destination not in open_ranges, name
            assert rule.get("CidrIpv6") not in open_ranges, name
            assert rule.get("IpProtocol") == "tcp", f"{name}: egress beyond TCP"
    for name, rule in resources(template, "AWS::EC2::SecurityGroupIngress").items():
        assert "SourceSecurityGroupId" in rule["Properties"], name
    # the function accepts no connection at all, and reaches only what it needs
    function_sg = props(template, "FunctionSecurityGroup")
    assert "SecurityGroupIngress" not in function_sg
    egress = [
        (r.get("CidrIp") or r.get("DestinationPrefixListId"), r["FromPort"])
        for r in function_sg["SecurityGroupEgress"]
    ]
    assert [dest for dest, _ in egress] == [
        {"Fn::If": ["PublicNetwork", "0.0.0.0/0", {"Ref": "PeeringCidr"}]},
        {"Ref": "SourceCidr"},
        {"Ref": "DynamoDbPrefixListId"},
    ]
    separate = props(template, "FunctionToEndpointsEgress")
    assert separate["GroupId"] == {"Ref": "FunctionSecurityGroup"}
    assert (separate["FromPort"], separate["ToPort"]) == (443, 443)
    assert separate["DestinationSecurityGroupId"]["Fn::If"][1] == {"Ref": "EndpointSecurityGroup"}


@pytest.mark.parametrize(
    ("ports", "expected"), [("2113", (2113, 2113)), ("2113-2115", (2113, 2115))]
)
def test_port_range_parameter_splits_into_from_and_to(
    template: dict[str, Any], ports: str, expected: tuple[int, int]
) -> None:
    """The security group computes FromPort/ToPort with Select/Split on "${P}-${P}"."""
    rule = props(template, "FunctionSecurityGroup")["SecurityGroupEgress"][0]
    bounds = []
    for key in ("FromPort", "ToPort"):
        index, split = rule[key]["Fn::Select"]
        separator, joined = split["Fn::Split"]
        text = joined["Fn::Sub"].replace("${EsdbPortRange}", ports)
        bounds.append(int(text.split(separator)[int(index)]))
    assert tuple(bounds) == expected


def test_nothing_is_publicly_invokable(template: dict[str, Any]) -> None:
    types = {r["Type"] for r in template["Resources"].values()}
    assert not {"AWS::Lambda::Url", "AWS::Lambda::Permission"} & types
    assert not [t for t in types if t.startswith(("AWS::ApiGateway", "AWS::Serverless::Api"))]
    assert "AWS::Serverless::HttpApi" not in types
    function = props(template, FUNCTION)
    assert "FunctionUrlConfig" not in function
    assert "Events" not in function  # SAM events would add permissions and APIs
    for node in walk(template):
        if isinstance(node, dict) and "Principal" in node:
            principal = node["Principal"]
            assert principal != "*" and "*" not in as_list(principal.get("AWS", [])), node


def test_connection_strings_come_from_secrets_manager_only(template: dict[str, Any]) -> None:
    env = environment(template)
    # the handler reads the connection strings through these two names (a secret ARN each)
    assert env["ESDB_RELAY_SOURCE_SECRET"] == {"Ref": "SourceSecretArn"}
    assert env["ESDB_RELAY_TARGET_SECRET"] == {"Ref": "TargetSecretArn"}
    # and never from plain variables that JobConfig would read directly
    assert not {"ESDB_RELAY_SOURCE", "ESDB_RELAY_TARGET"} & set(env)
    for side in ("SourceSecretArn", "TargetSecretArn"):
        pattern = template["Parameters"][side]["AllowedPattern"]
        assert re.fullmatch(
            pattern, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:a/b-AbC123"
        )
        assert not re.fullmatch(pattern, "esdb://admin:changeit@db:2113")
        assert not re.fullmatch(pattern, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:a/b")
    secrets = {s["Ref"] for s in env.values() if isinstance(s, dict) and "Ref" in s}
    for name in secrets:
        assert not template["Parameters"].get(name, {}).get("NoEcho"), name
    for node in walk(template):
        if isinstance(node, str):
            assert not re.search(r"(esdb|kurrentdb)(\+discover)?://\S*@", node), node
    assert not resources(template, "AWS::SecretsManager::Secret")


@pytest.mark.parametrize("config_env", ["default", "public"])
def test_environment_is_what_the_handler_and_job_config_read(
    template: dict[str, Any],
    checker: ModuleType,
    config_env: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.config import JobConfig
    from handlers.aws import secrets

    sample = checker.read_samconfig(SAMPLE, config_env)
    # the environment with the sample's values
    values: dict[str, Any] = {**defaults(template), **sample}
    for name, spec in template["Parameters"].items():
        if spec["Type"] == "CommaDelimitedList" or spec["Type"].startswith("List<"):
            values[name] = str(values[name]).split(",")
    values["CheckpointTable"] = "esdb-relay-orders-migration"
    values["ChainQueue"] = "https://sqs.eu-west-1.amazonaws.com/123456789012/chain"
    values["EgressIp"] = "52.16.0.7"
    conditions = evaluate_conditions(template, values)
    assert conditions["PublicNetwork"] is (config_env == "public")
    env = {
        key: str(resolve(value, values, conditions)) for key, value in environment(template).items()
    }
    mode = "public" if config_env == "public" else "peered"
    assert env["ESDB_RELAY_PREFLIGHT__NETWORK_MODE"] == mode
    assert env["ESDB_RELAY_PREFLIGHT__EGRESS_IPS"] == ("52.16.0.7" if mode == "public" else "")
    assert env["ESDB_RELAY_PREFLIGHT__PEERING_CIDR"] == ("" if mode == "public" else "10.20.0.0/16")
    # what the handler reads: the names it spells out, and the secrets it resolves
    handler_source = "".join(p.read_text() for p in HANDLER_DIR.glob("*.py"))
    handler_reads = set(re.findall(r'"(ESDB_RELAY_[A-Z_]+)"', handler_source))
    read: list[str] = []
    monkeypatch.setattr(secrets, "read_secret", lambda ref, side: read.append(ref) or "esdb://x")
    assert set(secrets.connection_settings(env)) == {"source", "target"}
    handler_reads |= {key for key, value in env.items() if value in read}
    # the preflight action's network settings, read by core.tools.preflight.preflight_from_env
    handler_reads |= {k for k in env if k.startswith("ESDB_RELAY_PREFLIGHT__")} & preflight_keys()
    fields = JobConfig.model_fields
    for key in env:
        assert key.startswith("ESDB_RELAY_"), key
        path = key.removeprefix("ESDB_RELAY_").lower().split("__")
        if path[0] in fields:
            model: Any = fields[path[0]].annotation
            for part in path[1:]:
                assert part in model.model_fields, f"{key}: JobConfig has no {'.'.join(path)}"
                model = model.model_fields[part].annotation
        else:
            assert key in handler_reads, f"{key}: neither JobConfig nor the handler reads it"
    # JobConfig loads from exactly this environment plus the two connection strings that the
    # handler passes in from the secrets.
    for name in [k for k in os.environ if k.startswith("ESDB_RELAY_")]:
        monkeypatch.delenv(name)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    job = JobConfig.load(
        payload={"source": "esdb://source:2113?tls=false", "target": "esdb+discover://t:2113"}
    )
    assert job.job_id == "orders-migration"
    assert job.checkpoint_store == "dynamodb://esdb-relay-orders-migration"
    assert job.budget.max_events == int(sample["SliceMaxEvents"])
    assert job.mode == sample["Mode"]
    assert job.schedule_seconds == float(values["ScheduleSeconds"])


def defaults(template: dict[str, Any]) -> dict[str, str]:
    return {n: str(p["Default"]) for n, p in template["Parameters"].items() if "Default" in p}


def test_job_parameters_match_job_config(template: dict[str, Any]) -> None:
    from core.config import _JOB_ID_RE, BudgetConfig, JobConfig

    params = template["Parameters"]
    assert params["Mode"]["AllowedValues"] == list(
        get_args(JobConfig.model_fields["mode"].annotation)
    )
    partitions = {type(m).__name__: m for m in JobConfig.model_fields["partitions"].metadata}
    assert params["Partitions"]["MinValue"] == partitions["Ge"].ge
    assert params["Partitions"]["MaxValue"] == partitions["Le"].le
    budget = {type(m).__name__: m for m in BudgetConfig.model_fields["max_events"].metadata}
    assert params["SliceMaxEvents"]["MinValue"] >= budget["Ge"].ge
    assert params["SliceMaxEvents"]["Default"] == BudgetConfig().max_events
    # every job id the stack accepts is one the relay accepts, and fits the resource names
    job_pattern = params["JobId"]["AllowedPattern"]
    for job_id in ("orders-migration", "a", "A_1", "x" * 48):
        assert re.fullmatch(job_pattern, job_id) and _JOB_ID_RE.match(job_id), job_id
        assert len(f"esdb-relay-{job_id}") <= 64  # Lambda function and schedule names
        assert len(f"esdb-relay-{job_id}-invoke-dlq") <= 80  # SQS queue names
    for job_id in ("x" * 49, "-x", "a.b", "a b", "a*"):
        assert not re.fullmatch(job_pattern, job_id), job_id


def test_every_parameter_is_validated(template: dict[str, Any]) -> None:
    for name, spec in template["Parameters"].items():
        constrained = (
            spec["Type"].startswith(("AWS::", "List<AWS::"))
            or "AllowedPattern" in spec
            or "AllowedValues" in spec
            or ("MinValue" in spec and spec["Type"] == "Number")
        )
        assert constrained, f"{name} accepts anything"
        assert spec.get("Description"), f"{name} is not described"


def test_rules_check_what_cloudformation_can_compare(template: dict[str, Any]) -> None:
    rules = template["Rules"]
    subnets = rules["SubnetsInTheVpc"]["Assertions"][0]["Assert"]["Fn::EachMemberEquals"]
    assert subnets == [{"Fn::ValueOfAll": ["AWS::EC2::Subnet::Id", "VpcId"]}, {"Ref": "VpcId"}]
    assert "OrderedModeHasOnePartition" in rules
    assert "PeeringRangesDiffer" in rules
    peered = {"Fn::Equals": [{"Ref": "NetworkMode"}, "peered"]}
    public = {"Fn::Equals": [{"Ref": "NetworkMode"}, "public"]}
    assert rules["PeeringRangesDiffer"]["RuleCondition"] == peered
    assert rules["PeeredModeNeedsThePeeringRanges"]["RuleCondition"] == peered
    nat = rules["PublicModeNeedsTheNatSubnetAndRouteTables"]
    assert nat["RuleCondition"] == public
    asserted = json.dumps([a["Assert"] for a in nat["Assertions"]])
    assert "NatSubnetId" in asserted and "RouteTableIds" in asserted and "SubnetIds" in asserted
    for name, rule in rules.items():
        for assertion in rule["Assertions"]:
            assert assertion.get("AssertDescription"), name


# --- the public topology ----------------------------------------------------------------------


def test_network_mode_is_one_parameter_peered_by_default(template: dict[str, Any]) -> None:
    mode = template["Parameters"]["NetworkMode"]
    assert mode["AllowedValues"] == ["peered", "public"] and mode["Default"] == "peered"
    assert template["Conditions"]["PublicNetwork"] == {
        "Fn::Equals": [{"Ref": "NetworkMode"}, "public"]
    }
    # the NAT pieces exist in the public topology only, and nothing else depends on the mode
    conditional = {
        name: r.get("Condition")
        for name, r in template["Resources"].items()
        if r["Type"] in ("AWS::EC2::EIP", "AWS::EC2::NatGateway", "AWS::EC2::Route")
    }
    assert conditional == {
        "EgressIp": "PublicNetwork",
        "NatGateway": "PublicNetwork",
        "NatRoute1": "PublicNetwork",
        "NatRoute2": "PublicRoute2",
        "NatRoute3": "PublicRoute3",
    }


def test_public_topology_leaves_through_a_nat_gateway_with_a_static_ip(
    template: dict[str, Any],
) -> None:
    eip = props(template, "EgressIp")
    assert eip["Domain"] == "vpc"
    nat = props(template, "NatGateway")
    assert nat["AllocationId"] == {"Fn::GetAtt": ["EgressIp", "AllocationId"]}
    assert nat["SubnetId"] == {"Ref": "NatSubnetId"}
    assert nat["ConnectivityType"] == "public"
    for name in ("NatRoute1", "NatRoute2", "NatRoute3"):
        route = props(template, name)
        assert route["DestinationCidrBlock"] == "0.0.0.0/0", name
        assert route["NatGatewayId"] == {"Ref": "NatGateway"}, name
    # the function stays in the private subnets; the address it leaves from is an output
    assert props(template, FUNCTION)["VpcConfig"]["SubnetIds"] == {"Ref": "SubnetIds"}
    output = template["Outputs"]["EgressIp"]
    assert output["Condition"] == "PublicNetwork" and output["Value"] == {"Ref": "EgressIp"}
    assert "allowlist" in output["Description"]
    # and the preflight action is told it
    assert environment(template)["ESDB_RELAY_PREFLIGHT__EGRESS_IPS"] == {
        "Fn::If": ["PublicNetwork", {"Ref": "EgressIp"}, ""]
    }


@pytest.mark.parametrize("tables", [1, 2, 3])
def test_each_route_table_gets_one_route_to_the_nat_gateway(
    template: dict[str, Any], tables: int
) -> None:
    """RouteTableIds is a list of one to three: the conditions and Selects, evaluated, give one
    route per table and never a route to an empty table id."""
    ids = [f"rtb-0000000{i}" for i in range(tables)]
    values: dict[str, Any] = {
        **defaults(template),
        "NetworkMode": "public",
        "RouteTableIds": ids,
        "ExistingTableName": "",
    }
    conditions = evaluate_conditions(template, values)
    routed = [
        resolve(props(template, name)["RouteTableId"], values, conditions)
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::EC2::Route" and conditions[r["Condition"]]
    ]
    assert routed == ids
    peered = evaluate_conditions(template, {**values, "NetworkMode": "peered"})
    assert not any(peered[c] for c in ("PublicNetwork", "PublicRoute2", "PublicRoute3"))


# --- checkpoints ------------------------------------------------------------------------------


def test_checkpoint_table_matches_the_store(template: dict[str, Any]) -> None:
    from handlers.aws import checkpoint_store

    table = template["Resources"]["CheckpointTable"]
    p = table["Properties"]
    assert p["BillingMode"] == "PAY_PER_REQUEST"
    assert p["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert p["SSESpecification"]["SSEEnabled"] is True
    assert p["TimeToLiveSpecification"] == {
        "AttributeName": checkpoint_store.TTL_ATTRIBUTE,
        "Enabled": True,
    }
    keys = {k["AttributeName"]: k["KeyType"] for k in p["KeySchema"]}
    assert keys == {"pk": "HASH", "sk": "RANGE"}
    assert {a["AttributeName"]: a["AttributeType"] for a in p["AttributeDefinitions"]} == {
        "pk": "S",
        "sk": "S",
    }
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    checkpoint_store.validate_table_name("esdb-relay-" + "x" * 48)


def test_function_role_is_least_privilege(template: dict[str, Any]) -> None:
    trust = props(template, "FunctionRole")["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "lambda.amazonaws.com"}]
    granted: dict[str, list[Any]] = {}
    for s in statements(template, "FunctionRole"):
        assert s["Effect"] == "Allow"
        for action in as_list(s["Action"]):
            assert "*" not in action, f"wildcard action {action}"
            granted.setdefault(action, []).extend(as_list(s["Resource"]))
    table_arn = granted["dynamodb:GetItem"][0]["Fn::Sub"][0]
    assert table_arn.endswith(":table/${Table}")
    expected = {
        **dict.fromkeys(
            [f"dynamodb:{a}" for a in ("GetItem", "UpdateItem", "PutItem", "DeleteItem", "Query")],
            "table",
        ),
        "secretsmanager:GetSecretValue": "secrets",
        "kms:Decrypt": "key",
        "sqs:SendMessage": "queues",
        "sqs:ReceiveMessage": "chain",
        "sqs:DeleteMessage": "chain",
        "sqs:GetQueueAttributes": "chain",
        "logs:CreateLogStream": "logs",
        "logs:PutLogEvents": "logs",
        "ec2:DescribeNetworkInterfaces": "*",
        "ec2:DescribeSubnets": "*",
        "ec2:CreateNetworkInterface": "account",
        "ec2:DeleteNetworkInterface": "account",
        "ec2:AssignPrivateIpAddresses": "account",
        "ec2:UnassignPrivateIpAddresses": "account",
    }
    assert set(granted) == set(expected)
    chain = {"Fn::GetAtt": ["ChainQueue", "Arn"]}
    scopes = {
        "secrets": [{"Ref": "SourceSecretArn"}, {"Ref": "TargetSecretArn"}],
        "key": [{"Ref": "SecretsKmsKeyArn"}],
        "chain": [chain],
        "queues": [chain, {"Fn::GetAtt": ["InvokeDeadLetterQueue", "Arn"]}],
    }
    for action, scope in expected.items():
        resources_granted = granted[action]
        if scope == "*":
            assert resources_granted == ["*"], action  # Describe* has no resource-level scope
        elif scope in scopes:
            assert resources_granted == scopes[scope], action
        else:
            assert resources_granted != ["*"] and "*" not in resources_granted, action
    # the function does not invoke itself: chaining goes through the queue
    assert "lambda:InvokeFunction" not in granted


def test_dynamodb_grant_covers_exactly_what_the_store_calls(template: dict[str, Any]) -> None:
    source = (HANDLER_DIR / "checkpoint_store.py").read_text()
    # the store's calls through its client (create_table is a deployment helper, not the function)
    body = source.split("def create_table")[0]
    calls = set(re.findall(r"client\.(\w+)\(", body)) - {"close"}
    needed = {"dynamodb:" + "".join(w.capitalize() for w in c.split("_")) for c in calls}
    granted = {
        action
        for s in statements(template, "FunctionRole")
        for action in as_list(s["Action"])
        if action.startswith("dynamodb:")
    }
    assert needed == granted


def test_dynamodb_grant_is_limited_to_the_jobs_partitions(template: dict[str, Any]) -> None:
    from core.config import range_job_id
    from core.shards import shard_job_id

    checkpoints = next(
        s for s in statements(template, "FunctionRole") if s.get("Sid") == "Checkpoints"
    )
    keys = checkpoints["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
    patterns = [k["Fn::Sub"].replace("${JobId}", "orders") for k in keys]

    def allowed(pk: str) -> bool:
        return any(re.fullmatch(re.escape(p).replace(r"\*", ".*"), pk) for p in patterns)

    # the job, its backfill ranges and its shards, under the keys core names them by
    assert allowed("job#orders")
    assert allowed(f"job#{range_job_id('orders', 0, 12345)}")
    assert allowed(f"job#{shard_job_id(range_job_id('orders', 0, 12345), 3)}")
    assert allowed(f"job#{shard_job_id('orders', 3)}")
    assert not allowed("job#other")
    assert not allowed("job#orders2")


# --- chaining, dead letters, endpoints ---------------------------------------------------------


def test_chain_queue_feeds_the_function_one_message_at_a_time(template: dict[str, Any]) -> None:
    mappings = resources(template, "AWS::Lambda::EventSourceMapping")
    assert len(mappings) == 1
    (mapping,) = mappings.values()
    m = mapping["Properties"]
    assert m["EventSourceArn"] == {"Fn::GetAtt": ["ChainQueue", "Arn"]}
    assert m["FunctionName"] == {"Ref": FUNCTION}
    assert m["BatchSize"] == 1
    assert environment(template)["ESDB_RELAY_CHAIN_QUEUE_URL"] == {"Ref": "ChainQueue"}
    queue = props(template, "ChainQueue")
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["ChainDeadLetterQueue", "Arn"]}
    # the chain is a loop through SQS by design: Lambda must not stop it after ~16 hops
    assert props(template, FUNCTION)["RecursiveLoop"] == "Allow"


def test_failed_asynchronous_invokes_go_to_a_dead_letter_queue(template: dict[str, Any]) -> None:
    function = props(template, FUNCTION)
    assert function["DeadLetterQueue"] == {
        "Type": "SQS",
        "TargetArn": {"Fn::GetAtt": ["InvokeDeadLetterQueue", "Arn"]},
    }
    assert function["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    for name in ("ChainQueue", "ChainDeadLetterQueue", "InvokeDeadLetterQueue"):
        assert props(template, name)["SqsManagedSseEnabled"] is True, name


def test_vpc_endpoints_for_everything_the_function_calls(template: dict[str, Any]) -> None:
    endpoints = {
        p["Properties"]["ServiceName"]["Fn::Sub"].rpartition(".")[2]: p
        for p in resources(template, "AWS::EC2::VPCEndpoint").values()
    }
    assert set(endpoints) == {"dynamodb", "sqs", "secretsmanager", "logs"}
    assert endpoints["dynamodb"]["Properties"]["VpcEndpointType"] == "Gateway"
    assert endpoints["dynamodb"]["Properties"]["RouteTableIds"] == {"Ref": "RouteTableIds"}
    for service in ("sqs", "secretsmanager", "logs"):
        p = endpoints[service]["Properties"]
        assert p["VpcEndpointType"] == "Interface", service
        assert p["PrivateDnsEnabled"] is True, service
        assert p["SubnetIds"] == {"Ref": "SubnetIds"}, service
        assert p["SecurityGroupIds"] == [{"Ref": "EndpointSecurityGroup"}], service
    # SQS chaining: the function never calls the Lambda API, so no Lambda endpoint
    assert "lambda" not in endpoints


# --- monitoring -------------------------------------------------------------------------------


def slice_line(**figures: Any) -> dict[str, Any]:
    """The JSON line core.logs writes for one slice, as CloudWatch receives it."""
    from core.engine import SliceResult
    from core.logs import JsonFormatter, log_slice, logger

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    saved = (logger.handlers[:], logger.level, logger.propagate)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        log_slice(SliceResult(**figures))
    finally:
        logger.handlers[:], level, logger.propagate = saved
        logger.setLevel(level)
    return json.loads(stream.getvalue())


def matches(pattern: str, line: dict[str, Any]) -> bool:
    """CloudWatch Logs' JSON filter `{ $.a.b OP value }`, for the patterns the template uses."""
    found = re.fullmatch(r"\{\s*\$\.([\w.]+)\s*(>=|=)\s*(\"[^\"]*\"|[\d.]+)\s*\}", pattern)
    assert found, f"unsupported filter pattern {pattern}"
    value = json_path(line, "$." + found.group(1))
    op, expected = found.group(2), json.loads(found.group(3))
    if op == "=":
        return value == expected
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= expected


def json_path(line: dict[str, Any], path: str) -> Any:
    value: Any = line
    for part in path.removeprefix("$.").split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def test_error_lines_alarm_counts_failed_slices(template: dict[str, Any]) -> None:
    error_filter = props(template, "ErrorLinesMetricFilter")
    assert matches(error_filter["FilterPattern"], slice_line(job_id="j", status="failed"))
    assert not matches(error_filter["FilterPattern"], slice_line(job_id="j", status="ok"))
    transform = error_filter["MetricTransformations"][0]
    alarm = props(template, "ErrorLinesAlarm")
    assert (alarm["Namespace"], alarm["MetricName"]) == (
        transform["MetricNamespace"],
        transform["MetricName"],
    )


def test_alarms_on_errors_throttles_and_dead_letters(template: dict[str, Any]) -> None:
    alarms = [a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm").values()]
    on_function = {
        a["MetricName"]
        for a in alarms
        if a["Namespace"] == "AWS/Lambda"
        and a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": FUNCTION}}]
    }
    assert on_function == {"Errors", "Throttles"}
    dead_letters = [a for a in alarms if a["Namespace"] == "AWS/SQS"]
    assert [a["Dimensions"][0]["Value"] for a in dead_letters] == [
        {"Fn::GetAtt": ["ChainDeadLetterQueue", "QueueName"]}
    ]
    for alarm in alarms:
        assert alarm["AlarmActions"]["Fn::If"][0] == "HasAlarmTopic"


def test_log_group_keeps_logs_for_a_set_time(template: dict[str, Any]) -> None:
    group = props(template, "LogGroup")
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert group["LogGroupName"] == {"Fn::Sub": "/aws/lambda/esdb-relay-${JobId}"}
    assert props(template, FUNCTION)["FunctionName"] == {"Fn::Sub": "esdb-relay-${JobId}"}


# --- check_parameters.py: what CloudFormation cannot check ------------------------------------


def test_sample_parameters_are_valid(checker: ModuleType, sample: dict[str, str]) -> None:
    template = checker.load_template(TEMPLATE)
    assert checker.check(template, sample) == []
    public = checker.read_samconfig(SAMPLE, "public")
    assert public["NetworkMode"] == "public" and "PeeringCidr" not in public
    assert checker.check(template, public) == []
    # the sample's subnets lie inside the peered range, which is what the check is for
    assert sample["PeeringRemoteCidr"] == "10.20.0.0/16"
    assert sample["Schedule"] == "rate(5 minutes)"  # quoted in the file, as SAM needs


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"SubnetCidrs": "10.20.32.0/20,10.30.0.0/20"},
            "subnet-0fedcba9876543210 (10.30.0.0/20) is not inside",
        ),
        ({"SubnetCidrs": "10.20.32.0/20"}, "SubnetCidrs has 1 entries for 2 SubnetIds"),
        ({"SubnetCidrs": "10.20.32.0/20,10.20.48.1/20"}, "host bits"),
        ({"PeeringCidr": "10.20.128.0/17"}, "overlaps PeeringRemoteCidr"),
        ({"PeeringCidr": "10.20.0.0/16"}, "same range"),
        ({"Partitions": "4"}, "Partitions > 1 needs Mode=partitioned"),
        ({"EsdbPortRange": "2115-2113"}, "EsdbPortRange: 2115-2113"),
        ({"SourcePortRange": "70000"}, "SourcePortRange: 70000"),
        ({"Schedule": "rate(1 minutes)"}, "Schedule: 'rate(1 minutes)' does not match"),
        ({"Mode": "parallel"}, "Mode: 'parallel' is not one of"),
        ({"SliceMaxEvents": "0"}, "below the minimum"),
        ({"SubnetIds": "subnet-0123456789abcdef0,sn-2"}, "'sn-2' is not a AWS::EC2::Subnet::Id"),
        ({"TargetSecretArn": "esdb://admin:changeit@db:2113"}, "TargetSecretArn"),
        ({"CreateDynamoDbEndpoint": "true", "RouteTableIds": ""}, "needs RouteTableIds"),
        ({"CreateInterfaceEndpoints": "false"}, "needs ExistingEndpointSecurityGroupId"),
        ({"JobId": None}, "JobId: required"),
        ({"Unknown": "x"}, "Unknown: not a parameter"),
    ],
)
def test_check_parameters_reports_each_mistake(
    checker: ModuleType, sample: dict[str, str], change: dict[str, str | None], problem: str
) -> None:
    params = {**sample, **change}
    params = {k: v for k, v in params.items() if v is not None}
    problems = checker.check(checker.load_template(TEMPLATE), params)
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"NatSubnetId": None}, "NetworkMode=public needs NatSubnetId"),
        ({"RouteTableIds": None}, "NetworkMode=public needs RouteTableIds"),
        (
            {"RouteTableIds": "rtb-0a1b2c3d,rtb-0a1b2c3e,rtb-0a1b2c3f,rtb-0a1b2c40"},
            "4 route tables; the template routes at most 3",
        ),
        ({"NatSubnetId": "subnet-0123456789abcdef0"}, "is one of SubnetIds"),
        ({"NatSubnetId": "igw-0123456789abcdef0"}, "NatSubnetId: 'igw-0123456789abcdef0'"),
        ({"NetworkMode": "peered"}, "PeeringCidr: required with NetworkMode=peered"),
        ({"NetworkMode": "nat"}, "NetworkMode: 'nat' is not one of"),
    ],
)
def test_check_parameters_reports_each_public_topology_mistake(
    checker: ModuleType, change: dict[str, str | None], problem: str
) -> None:
    params = {**checker.read_samconfig(SAMPLE, "public"), **change}
    params = {k: v for k, v in params.items() if v is not None}
    problems = checker.check(checker.load_template(TEMPLATE), params)
    assert any(problem in p for p in problems), problems


def test_check_parameters_command_exit_codes(
    checker: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert checker.main([str(SAMPLE)]) == 0
    assert "parameters OK" in capsys.readouterr().out
    bad = tmp_path / "samconfig.toml"
    bad.write_text(SAMPLE.read_text().replace("10.20.48.0/20", "192.168.0.0/24"))
    assert checker.main([str(bad)]) == 1
    assert "is not inside the peered range" in capsys.readouterr().out
    assert checker.main([str(tmp_path / "missing.toml")]) == 2


def test_overrides_parse_like_sam(checker: ModuleType) -> None:
    as_string = checker.parse_overrides('JobId=a Schedule="rate(5 minutes)" SubnetIds=s-1,s-2')
    as_list = checker.parse_overrides(
        ["JobId=a", 'Schedule="rate(5 minutes)"', "SubnetIds=s-1,s-2"]
    )
    assert (
        as_string
        == as_list
        == {"JobId": "a", "Schedule": "rate(5 minutes)", "SubnetIds": "s-1,s-2"}
    )
    with pytest.raises(ValueError, match="not Key=Value"):
        checker.parse_overrides(["JobId"])


# --- check_parameters.py --aws, against an account simulated by moto ---------------------------


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A VPC peered with an "Event Store Cloud" network, two private subnets in two zones
    routing to it, and a third subnet without the route."""
    import boto3
    from moto import mock_aws

    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="eu-west-1")
        vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        for attribute in ("EnableDnsSupport", "EnableDnsHostnames"):
            ec2.modify_vpc_attribute(VpcId=vpc, **{attribute: {"Value": True}})
        esc = ec2.create_vpc(CidrBlock="172.29.0.0/16")["Vpc"]["VpcId"]
        pcx = ec2.create_vpc_peering_connection(VpcId=vpc, PeerVpcId=esc)
        pcx_id = pcx["VpcPeeringConnection"]["VpcPeeringConnectionId"]
        table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        ec2.create_route(
            RouteTableId=table, DestinationCidrBlock="172.29.0.0/16", VpcPeeringConnectionId=pcx_id
        )
        subnets = []
        for cidr, zone in (("10.20.32.0/20", "a"), ("10.20.48.0/20", "b"), ("10.20.64.0/20", "c")):
            subnet = ec2.create_subnet(
                VpcId=vpc, CidrBlock=cidr, AvailabilityZone=f"eu-west-1{zone}"
            )
            subnets.append(subnet["Subnet"]["SubnetId"])
        for subnet in subnets[:2]:
            ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
        prefix_list = ec2.describe_managed_prefix_lists(
            Filters=[{"Name": "prefix-list-name", "Values": ["com.amazonaws.eu-west-1.dynamodb"]}]
        )["PrefixLists"][0]["PrefixListId"]
        params = {
            "VpcId": vpc,
            "SubnetIds": ",".join(subnets[:2]),
            "SubnetCidrs": "10.20.32.0/20,10.20.48.0/20",
            "PeeringCidr": "172.29.0.0/16",
            "RouteTableIds": table,
            "DynamoDbPrefixListId": prefix_list,
            "CreateInterfaceEndpoints": "true",
        }
        yield {"ec2": ec2, "params": params, "subnets": subnets, "vpc": vpc}


@pytest.fixture
def public_account(account: dict[str, Any]) -> dict[str, Any]:
    """The same VPC with an internet gateway and a public subnet for the NAT gateway; the
    function's subnets keep their route table, which has no 0.0.0.0/0 route."""
    ec2, vpc = account["ec2"], account["vpc"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    public_table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=public_table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    nat_subnet = ec2.create_subnet(
        VpcId=vpc, CidrBlock="10.20.0.0/24", AvailabilityZone="eu-west-1a"
    )["Subnet"]["SubnetId"]
    ec2.associate_route_table(RouteTableId=public_table, SubnetId=nat_subnet)
    params = {
        k: v for k, v in account["params"].items() if k not in ("PeeringCidr", "PeeringRemoteCidr")
    }
    params.update(NetworkMode="public", NatSubnetId=nat_subnet)
    return {**account, "params": params, "igw": igw, "nat_subnet": nat_subnet}


def test_check_aws_accepts_a_public_topology_account(
    checker: ModuleType, public_account: dict[str, Any]
) -> None:
    assert checker.check_aws(public_account["params"], public_account["ec2"]) == []


def test_check_aws_reports_what_a_public_topology_account_contradicts(
    checker: ModuleType, public_account: dict[str, Any]
) -> None:
    ec2, params = public_account["ec2"], public_account["params"]
    # the NAT subnet must reach the internet gateway
    private_nat = {**params, "NatSubnetId": public_account["subnets"][2]}
    problems = checker.check_aws(private_nat, ec2)
    assert any("is not a public subnet" in p for p in problems), problems
    # the function's route tables must not have a default route already
    table = params["RouteTableIds"]
    ec2.create_route(
        RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=public_account["igw"]
    )
    problems = checker.check_aws(params, ec2)
    assert len(problems) == 2, problems  # one per function subnet
    assert all(
        "already has a 0.0.0.0/0 route" in p and public_account["igw"] in p for p in problems
    )


def test_check_aws_accepts_a_correctly_peered_account(
    checker: ModuleType, account: dict[str, Any]
) -> None:
    assert checker.check_aws(account["params"], account["ec2"]) == []


def test_check_aws_reports_what_the_account_contradicts(
    checker: ModuleType, account: dict[str, Any]
) -> None:
    ec2, subnets = account["ec2"], account["subnets"]
    wrong_cidrs = {**account["params"], "SubnetCidrs": "10.20.32.0/20,10.20.99.0/24"}
    assert checker.check_aws(wrong_cidrs, ec2) == [
        f"SubnetCidrs: {subnets[1]} is 10.20.48.0/20, not 10.20.99.0/24"
    ]
    unrouted = {
        **account["params"],
        "SubnetIds": f"{subnets[0]},{subnets[2]}",
        "SubnetCidrs": "10.20.32.0/20,10.20.64.0/20",
    }
    problems = checker.check_aws(unrouted, ec2)
    assert any(f"{subnets[2]}: its route table" in p and "no route" in p for p in problems)
    assert any(f"RouteTableIds: {subnets[2]} uses" in p for p in problems)
    ec2.modify_vpc_attribute(VpcId=account["vpc"], EnableDnsHostnames={"Value": False})
    problems = checker.check_aws(account["params"], ec2)
    assert problems == [
        f"VpcId: {account['vpc']} has enableDnsHostnames off; private DNS for the interface "
        "endpoints needs it on"
    ]
    wrong_list = {**account["params"], "DynamoDbPrefixListId": "pl-00000000"}
    ec2.modify_vpc_attribute(VpcId=account["vpc"], EnableDnsHostnames={"Value": True})
    assert any("DynamoDbPrefixListId" in p for p in checker.check_aws(wrong_list, ec2))

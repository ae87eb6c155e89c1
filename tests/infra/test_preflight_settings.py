"""The deployments pass the function's subnets, the peering range and the cloud to the
preflight action (core.tools.preflight.preflight_from_env reads ESDB_RELAY_PREFLIGHT__*).

Each template's preflight settings are evaluated with sample values, put in the environment,
and preflight_from_env is run for real (endpoints on closed local ports, an SQLite store): the
network checks must judge the deployed subnet against the deployed peering range, and a
subnet outside it must fail.
"""

from __future__ import annotations

import inspect
import os
import re
import socket
from pathlib import Path
from typing import Any

import hcl2
import pytest
from cfnlint.decode import cfn_yaml
from hcl2 import SerializationOptions

from core.config import JobConfig
from core.tools.preflight import run as preflight_module

INFRA = Path(__file__).resolve().parents[2] / "infra"
OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
PREFIX = "ESDB_RELAY_PREFLIGHT__"


def preflight_keys() -> set[str]:
    """The settings preflight_from_env reads, from its source."""
    source = inspect.getsource(preflight_module.preflight_from_env)
    return {PREFIX + name for name in re.findall(r"\{prefix\}([A-Z_]+)", source)}


def aws_settings(subnets: list[str], peering: str, mode: str = "peered") -> dict[str, str]:
    template = cfn_yaml.load(str(INFRA / "aws" / "template.yaml"))
    env = template["Resources"]["RelayFunction"]["Properties"]["Environment"]["Variables"]
    values: dict[str, Any] = {
        "SubnetCidrs": subnets,
        "PeeringRemoteCidr": "" if mode == "public" else peering,
        "NetworkMode": mode,
        "EgressIp": EGRESS_IP,  # Ref of the Elastic IP: its address
    }
    conditions = {"PublicNetwork": mode == "public"}
    assert template["Conditions"]["PublicNetwork"] == {
        "Fn::Equals": [{"Ref": "NetworkMode"}, "public"]
    }

    def resolve(node: Any) -> Any:
        if isinstance(node, str):
            return node
        if "Ref" in node:
            return values[node["Ref"]]
        if "Fn::If" in node:
            name, yes, no = node["Fn::If"]
            return resolve(yes if conditions[name] else no)
        if "Fn::Join" in node:
            sep, items = node["Fn::Join"]
            items = resolve(items) if isinstance(items, dict) else items
            return sep.join(resolve(i) for i in items)
        raise AssertionError(f"the test cannot evaluate {node}")

    return {k: resolve(v) for k, v in env.items() if k.startswith(PREFIX)}


def terraform_settings(folder: str, local: str, values: dict[str, Any]) -> dict[str, str]:
    """The settings map, its ${...} evaluated with `values`: references, and the one
    conditional form the templates use, `COND ? A : B` (A, B references or string literals)."""
    merged: dict[str, Any] = {}
    for path in sorted((INFRA / folder).glob("*.tf")):
        for block in hcl2.loads(path.read_text(), serialization_options=OPTIONS).get("locals", []):
            merged.update(block)
    settings = merged[local]

    def term(text: str) -> Any:
        text = text.strip()
        if re.fullmatch(r'"[^"]*"', text):  # a string literal
            return text[1:-1]
        assert text in values, f"the test cannot evaluate {text}"
        return values[text]

    def evaluate(value: str) -> str:
        def ref(m: re.Match[str]) -> str:
            expression = m.group(1)
            conditional = re.fullmatch(r"(.+?)\?(.+?):(.+)", expression)
            if conditional:
                condition, yes, no = conditional.groups()
                return str(term(yes) if term(condition) else term(no))
            return str(term(expression))

        return re.sub(r"\$\{([^{}]+)\}", ref, value)

    return {k: evaluate(v) for k, v in settings.items() if k.startswith(PREFIX)}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_preflight(settings: dict[str, str], tmp_path: Path, monkeypatch) -> dict[str, Any]:
    for key in [k for k in os.environ if k.startswith("ESDB_RELAY_")]:
        monkeypatch.delenv(key)
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    job = JobConfig.load(
        payload={
            "job_id": "infra-preflight",
            "source": f"esdb://127.0.0.1:{closed_port()}?tls=false",
            "target": f"esdb://127.0.0.1:{closed_port()}?tls=false",
            "checkpoint_store": f"sqlite:///{tmp_path}/cp.db",
        }
    )
    report = preflight_module.preflight_from_env(job, timeout=0.5)
    return {c.name: c for c in report.checks if c.name.startswith("network:")}


EGRESS_IP = "34.120.5.6"  # the static address each template's NAT would get


def terraform_values(mode: str, **named: str) -> dict[str, Any]:
    return {
        **named,
        "var.network_mode": mode,
        "local.public": mode == "public",
        "local.egress_ip": EGRESS_IP if mode == "public" else "",
    }


CASES = {
    "aws": lambda subnet, peering, mode: aws_settings([subnet, "10.1.2.0/24"], peering, mode),
    "gcp": lambda subnet, peering, mode: terraform_settings(
        "gcp",
        "relay_environment",
        terraform_values(mode, **{"var.connector_cidr": subnet, "var.peering_cidr": peering}),
    ),
    "azure": lambda subnet, peering, mode: terraform_settings(
        "azure",
        "relay_app_settings",
        terraform_values(
            mode, **{"var.function_subnet_cidr": subnet, "var.peering_remote_range": peering}
        ),
    ),
}


@pytest.mark.parametrize("cloud", sorted(CASES))
def test_deployment_passes_the_network_to_the_preflight_action(cloud, tmp_path, monkeypatch):
    settings = CASES[cloud]("10.1.255.240/28", "10.1.0.0/16", "peered")
    assert {f"{PREFIX}SUBNETS", f"{PREFIX}PEERING_CIDR", f"{PREFIX}CLOUD"} <= set(settings)
    assert set(settings) <= preflight_keys(), "a setting preflight_from_env does not read"
    assert settings[f"{PREFIX}CLOUD"] == cloud
    assert settings[f"{PREFIX}NETWORK_MODE"] == "peered"
    assert settings[f"{PREFIX}EGRESS_IPS"] == ""
    checks = run_preflight(settings, tmp_path, monkeypatch)
    inside = checks["network: subnet 10.1.255.240/28"]
    assert inside.status == "ok" and "10.1.0.0/16" in inside.detail
    if cloud == "azure":  # the template integrates the app into the directly peered VNet
        assert checks["network: Azure gateway transit"].status == "ok"
    assert "network: allowlist" not in checks

    outside = run_preflight(
        CASES[cloud]("10.9.0.0/28", "10.1.0.0/16", "peered"), tmp_path, monkeypatch
    )
    assert outside["network: subnet 10.9.0.0/28"].status == "fail"


@pytest.mark.parametrize("cloud", sorted(CASES))
def test_public_deployment_passes_its_egress_ip_to_the_preflight_action(
    cloud, tmp_path, monkeypatch
):
    """network_mode public: the NAT's static address reaches the preflight action, which checks
    it and the cluster's allowlist instead of the peering range."""
    settings = CASES[cloud]("10.1.255.240/28", "10.1.0.0/16", "public")
    assert set(settings) <= preflight_keys(), "a setting preflight_from_env does not read"
    assert settings[f"{PREFIX}NETWORK_MODE"] == "public"
    assert settings[f"{PREFIX}EGRESS_IPS"] == EGRESS_IP
    assert settings[f"{PREFIX}PEERING_CIDR"] == ""
    assert f"{PREFIX}VNET_PEERED_DIRECTLY" not in settings or cloud == "azure"
    checks = run_preflight(settings, tmp_path, monkeypatch)
    egress = checks["network: egress IPs"]
    assert egress.status == "ok" and EGRESS_IP in egress.detail
    assert checks["network: allowlist"].status == "fail"  # the endpoints are closed ports
    assert not any(name.startswith("network: subnet") for name in checks)
    assert "network: Azure gateway transit" not in checks

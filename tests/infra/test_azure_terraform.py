"""Offline checks of infra/azure, the Terraform (azurerm) deployment of the Azure Functions app.

The azurerm provider cannot be downloaded here, so `terraform init/validate` of the whole folder
is impossible. What runs instead: `terraform fmt -check`; structural tests on the configuration
parsed by python-hcl2; the variable validations evaluated by terraform itself (a plan of
variables.tf alone needs no provider); the app settings checked against JobConfig, the handler's
bindings and the Table store's URL parser; host.json against the packager; and checkov, with zero
failed checks other than ones suppressed in the code with a written reason.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

from tests.infra.checkov import run_checkov

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra" / "azure"
FUNCTION_APP = ROOT / "handlers" / "azure" / "function_app.py"
OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
COMMENT_KEYS = frozenset({"__comments__", "__inline_comments__"})

APP = "azurerm_linux_function_app"
IDENTITY_PRINCIPAL = "${azurerm_user_assigned_identity.relay.principal_id}"
IDENTITY_ID = "${azurerm_user_assigned_identity.relay.id}"
CLIENT_ID = "${local.client_id}"
PEERED = "data.azurerm_virtual_network.peered"


# --- the parsed configuration ----------------------------------------------------------------


def _clean(value: Any) -> Any:
    """The parsed value without python-hcl2's comment entries."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if k not in COMMENT_KEYS}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


class Config:
    """All *.tf files of one folder, parsed and merged."""

    def __init__(self, folder: Path) -> None:
        self.texts = {p.name: p.read_text() for p in sorted(folder.glob("*.tf"))}
        assert self.texts, f"no .tf files in {folder}"
        self.resources: dict[str, dict[str, dict[str, Any]]] = {}
        self.data: dict[str, dict[str, dict[str, Any]]] = {}
        self.variables: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.locals: dict[str, Any] = {}
        self.terraform: list[dict[str, Any]] = []
        self.providers: list[dict[str, Any]] = []
        for name, text in self.texts.items():
            doc = _clean(hcl2.loads(text, serialization_options=OPTIONS))
            for kind, target in (("resource", self.resources), ("data", self.data)):
                for block in doc.get(kind, []):
                    for rtype, named in block.items():
                        for rname, body in named.items():
                            assert rname not in target.get(rtype, {}), f"{rtype}.{rname} twice"
                            target.setdefault(rtype, {})[rname] = body
            for block in doc.get("variable", []):
                self.variables.update(block)
            for block in doc.get("output", []):
                self.outputs.update(block)
            for block in doc.get("locals", []):
                for key, value in block.items():
                    assert key not in self.locals, f"local.{key} twice ({name})"
                    self.locals[key] = value
            self.terraform += doc.get("terraform", [])
            self.providers += doc.get("provider", [])

    def of(self, rtype: str) -> dict[str, dict[str, Any]]:
        return self.resources.get(rtype, {})

    def one(self, rtype: str, name: str) -> dict[str, Any]:
        found = self.of(rtype)
        assert name in found, f"no {rtype}.{name} (have {sorted(found)})"
        return found[name]


def one(blocks: Any) -> dict[str, Any]:
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected one block, got {blocks!r}"
    return blocks[0]


def strings(value: Any) -> list[str]:
    """Every string inside a parsed value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


@pytest.fixture(scope="module")
def tf() -> Config:
    return Config(INFRA)


@pytest.fixture(scope="module")
def settings(tf: Config) -> dict[str, str]:
    """The function app's app settings as the template wires them (before var.job_settings)."""
    app = tf.one(APP, "relay")
    assert app["app_settings"] == "${local.app_settings}"
    assert tf.locals["app_settings"] == "${merge(var.job_settings, local.relay_app_settings)}", (
        "the template's own settings must win over var.job_settings"
    )
    found = tf.locals["relay_app_settings"]
    assert isinstance(found, dict) and found
    return found


def site_config(tf: Config) -> dict[str, Any]:
    return one(tf.one(APP, "relay")["site_config"])


# --- terraform itself ---------------------------------------------------------------------------


def terraform(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.fail("terraform is not on PATH: install Terraform >= 1.9 (infra/azure needs it)")
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    env["TF_CLI_CONFIG_FILE"] = os.devnull  # no provider is needed, so no mirror configuration
    return subprocess.run(
        [binary, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_terraform_files_are_fmt_clean() -> None:
    proc = terraform("fmt", "-check", "-diff", "-recursive", str(INFRA), cwd=ROOT)
    assert proc.returncode == 0, f"terraform fmt -check failed:\n{proc.stdout}{proc.stderr}"


def test_provider_and_terraform_are_pinned(tf: Config) -> None:
    block = one(tf.terraform)
    # variable validations that refer to other variables need Terraform 1.9
    assert block["required_version"] == ">= 1.9.0"
    azurerm = one(block["required_providers"])["azurerm"]
    assert azurerm == {"source": "hashicorp/azurerm", "version": "~> 5.2.0"}
    features = one(one(tf.providers)["azurerm"]["features"])
    # the storage account is private: the provider must not reach for its data plane
    assert one(features["storage"])["data_plane_available"] is False
    assert one(features["key_vault"])["purge_soft_delete_on_destroy"] is False


# --- the network: a subnet of the directly peered VNet --------------------------------------------


def test_function_is_integrated_into_a_delegated_subnet_of_the_peered_vnet(tf: Config) -> None:
    app = tf.one(APP, "relay")
    assert app["virtual_network_subnet_id"] == "${azurerm_subnet.function.id}"
    assert site_config(tf)["vnet_route_all_enabled"] is True

    peered = tf.data["azurerm_virtual_network"]["peered"]
    assert peered == {
        "name": "${local.peered_vnet.name}",
        "resource_group_name": "${local.peered_vnet.resource_group_name}",
    }
    assert tf.locals["peered_vnet"] == {
        "subscription_id": '${split("/", var.peered_vnet_id)[2]}',
        "resource_group_name": '${split("/", var.peered_vnet_id)[4]}',
        "name": '${split("/", var.peered_vnet_id)[8]}',
    }

    subnet = tf.one("azurerm_subnet", "function")
    assert subnet["virtual_network_name"] == f"${{{PEERED}.name}}"
    assert subnet["resource_group_name"] == f"${{{PEERED}.resource_group_name}}"
    assert subnet["address_prefixes"] == ["${var.function_subnet_cidr}"]
    delegation = one(one(subnet["delegation"])["service_delegation"])
    assert delegation["name"] == "Microsoft.Web/serverFarms"
    assert delegation["actions"] == ["Microsoft.Network/virtualNetworks/subnets/action"]

    # No VNet of our own, no peering of our own, no second integration path: a VNet peered to
    # the peered one could not reach Event Store Cloud (no gateway transit on its peering).
    for rtype in (
        "azurerm_virtual_network",
        "azurerm_virtual_network_peering",
        "azurerm_app_service_virtual_network_swift_connection",
    ):
        assert not tf.of(rtype), f"{rtype} must not be created"
    assert not tf.of("azurerm_linux_function_app_slot")


def test_subnet_preconditions_check_subscription_region_and_address_space(tf: Config) -> None:
    checks = one(tf.one("azurerm_subnet", "function")["lifecycle"])["precondition"]
    conditions = [c["condition"] for c in checks]
    assert (
        "${local.peered_vnet.subscription_id == data.azurerm_client_config.current."
        "subscription_id}" in conditions
    )
    assert any("data.azurerm_virtual_network.peered.location" in c for c in conditions)
    # the peering's checks hold in the peered topology only
    assert (
        "${local.public || length(data.azurerm_virtual_network.peered.vnet_peerings) > 0}"
        in conditions
    )
    assert "${local.function_subnet_in_vnet}" in conditions
    assert "${local.public || local.peering_range_in_vnet}" in conditions
    endpoint_checks = one(tf.one("azurerm_subnet", "endpoints")["lifecycle"])["precondition"]
    assert [c["condition"] for c in endpoint_checks] == ["${local.endpoint_subnet_in_vnet}"]
    for name, cidr in (
        ("function_subnet_in_vnet", "function_subnet_cidr"),
        ("endpoint_subnet_in_vnet", "private_endpoint_subnet_cidr"),
        ("peering_range_in_vnet", "peering_remote_range"),
    ):
        expression = tf.locals[name]
        assert "local.vnet_address_space" in expression and f"var.{cidr}" in expression


def test_function_subnet_egress_is_limited_to_the_vnet_and_azure_monitor(tf: Config) -> None:
    nsg = tf.one("azurerm_network_security_group", "function")
    rules = {r["name"]: r for r in nsg["security_rule"]}
    assert rules["allow-vnet-outbound"]["destination_address_prefix"] == "VirtualNetwork"
    assert rules["allow-azure-monitor-outbound"]["destination_address_prefix"] == "AzureMonitor"
    conditional = one(nsg["dynamic"])["security_rule"]
    assert conditional["for_each"] == "${local.function_conditional_rules}"
    content = one(conditional["content"])
    assert (content["direction"], content["destination_address_prefix"]) == (
        "Outbound",
        "Internet",
    )
    assert content["access"] == "${security_rule.value.access}"
    assert tf.variables["allow_internet_egress"]["default"] is False
    for subnet in ("function", "endpoints"):
        association = tf.one("azurerm_subnet_network_security_group_association", subnet)
        assert association["subnet_id"] == f"${{azurerm_subnet.{subnet}.id}}"
        assert association["network_security_group_id"] == (
            f"${{azurerm_network_security_group.{subnet}.id}}"
        )
    for rule in tf.one("azurerm_network_security_group", "endpoints")["security_rule"]:
        assert rule["direction"] == "Inbound"
        if rule["access"] == "Allow":
            assert rule.get("source_address_prefix") != "*", f"{rule['name']} admits anyone"


@pytest.mark.parametrize(
    ("mode", "allow_internet", "expected"),
    [
        ("peered", False, {"deny-internet-outbound": ("Deny", "*", 4000)}),
        ("peered", True, {}),
        (
            "public",
            False,
            {
                "allow-cluster-internet-outbound": ("Allow", "2113", 130),
                "deny-internet-outbound": ("Deny", "*", 4000),
            },
        ),
        ("public", True, {"allow-cluster-internet-outbound": ("Allow", "2113", 130)}),
    ],
)
def test_internet_egress_is_the_clusters_port_in_the_public_topology_only(
    tf: Config, variables_only: Path, mode: str, allow_internet: bool, expected: dict[str, Any]
) -> None:
    """The NSG's input-dependent rules, evaluated by terraform: peered, the internet is denied;
    public, the cluster's port is allowed before the deny (a lower priority number wins)."""
    assert tf.locals["public"] == '${var.network_mode == "public"}'
    expression = _expression(tf.locals["function_conditional_rules"]).replace(
        "local.public", '(var.network_mode == "public")'
    )
    rendered = evaluate(
        variables_only,
        f"jsonencode({expression})",
        network_mode=mode,
        allow_internet_egress=allow_internet,
        peering_remote_range=None if mode == "public" else VALID["peering_remote_range"],
    )
    rules = json.loads(json.loads(rendered))
    assert {k: (r["access"], r["port"], r["priority"]) for k, r in rules.items()} == expected
    for rule in rules.values():
        assert rule["protocol"] == ("Tcp" if rule["access"] == "Allow" else "*")


def test_public_topology_leaves_through_a_nat_gateway_with_a_static_ip(
    tf: Config, settings: dict[str, str]
) -> None:
    mode = tf.variables["network_mode"]
    assert mode["default"] == "peered"
    assert '["peered", "public"]' in one(mode["validation"])["condition"]
    public = {
        (rtype, rname)
        for rtype, named in tf.resources.items()
        for rname, body in named.items()
        if body.get("count") == "${local.public ? 1 : 0}"
    }
    assert public == {
        ("azurerm_public_ip", "egress"),
        ("azurerm_nat_gateway", "egress"),
        ("azurerm_nat_gateway_public_ip_association", "egress"),
        ("azurerm_subnet_nat_gateway_association", "function"),
    }
    ip = tf.one("azurerm_public_ip", "egress")
    assert (ip["allocation_method"], ip["sku"]) == ("Static", "Standard")
    assert tf.one("azurerm_nat_gateway", "egress")["sku_name"] == "Standard"
    pair = tf.one("azurerm_nat_gateway_public_ip_association", "egress")
    assert pair == {
        "count": "${local.public ? 1 : 0}",
        "nat_gateway_id": "${azurerm_nat_gateway.egress[0].id}",
        "public_ip_address_id": "${azurerm_public_ip.egress[0].id}",
    }
    # on the function's integration subnet, which all its traffic enters (vnet_route_all)
    subnet = tf.one("azurerm_subnet_nat_gateway_association", "function")
    assert subnet["subnet_id"] == "${azurerm_subnet.function.id}"
    assert subnet["nat_gateway_id"] == "${azurerm_nat_gateway.egress[0].id}"
    assert site_config(tf)["vnet_route_all_enabled"] is True
    assert (
        "${azurerm_subnet_nat_gateway_association.function}" in tf.one(APP, "relay")["depends_on"]
    )
    output = tf.outputs["egress_ip"]
    assert output["value"] == "${local.public ? azurerm_public_ip.egress[0].ip_address : null}"
    assert "allowlist" in output["description"]
    assert tf.locals["egress_ip"] == (
        '${local.public ? azurerm_public_ip.egress[0].ip_address : ""}'
    )
    assert settings["ESDB_RELAY_PREFLIGHT__EGRESS_IPS"] == "${local.egress_ip}"
    assert settings["ESDB_RELAY_PREFLIGHT__NETWORK_MODE"] == "${var.network_mode}"
    assert settings["ESDB_RELAY_PREFLIGHT__VNET_PEERED_DIRECTLY"] == '${local.public ? "" : "true"}'


# --- storage and Key Vault: private only ----------------------------------------------------------


def test_storage_account_is_not_publicly_reachable(tf: Config) -> None:
    account = tf.one("azurerm_storage_account", "relay")
    assert account["public_network_access_enabled"] is False
    assert account["allow_nested_items_to_be_public"] is False
    assert account["https_traffic_only_enabled"] is True
    assert account["min_tls_version"] == "TLS1_2"
    assert account["default_to_oauth_authentication"] is True
    assert account["allowed_copy_scope"] == "PrivateLink"
    rules = one(account["network_rules"])
    assert rules["default_action"] == "Deny"
    assert not rules.get("ip_rules") and not rules.get("virtual_network_subnet_ids")
    # queues and the share go through Resource Manager, never the (private) data plane
    for rtype, name in (
        ("azurerm_storage_queue", "chain"),
        ("azurerm_storage_queue", "poison"),
        ("azurerm_storage_share", "content"),
    ):
        body = tf.one(rtype, name)
        assert body["storage_account_id"] == "${azurerm_storage_account.relay.id}"
        assert "storage_account_name" not in body
    assert not tf.of("azurerm_storage_table"), "azurerm_storage_table needs the private data plane"
    table = tf.one("azurerm_resource_group_template_deployment", "checkpoint_table")
    assert "Microsoft.Storage/storageAccounts/tableServices/tables" in table["template_content"]


def test_key_vault_is_private_rbac_and_purge_protected(tf: Config) -> None:
    vault = tf.one("azurerm_key_vault", "relay")
    assert vault["public_network_access_enabled"] is False
    assert vault["rbac_authorization_enabled"] is True
    assert vault["purge_protection_enabled"] is True
    assert vault["soft_delete_retention_days"] >= 7
    assert "access_policy" not in vault
    acls = one(vault["network_acls"])
    assert acls["default_action"] == "Deny"
    assert acls["bypass"] == "None"
    assert not acls.get("ip_rules")


def test_private_endpoints_with_private_dns_for_blob_queue_table_file_and_vault(
    tf: Config,
) -> None:
    endpoints = tf.locals["private_endpoints"]
    storage, vault = "${azurerm_storage_account.relay.id}", "${azurerm_key_vault.relay.id}"
    assert endpoints == {
        "blob": {
            "resource_id": storage,
            "subresource": "blob",
            "zone": "privatelink.blob.core.windows.net",
        },
        "queue": {
            "resource_id": storage,
            "subresource": "queue",
            "zone": "privatelink.queue.core.windows.net",
        },
        "table": {
            "resource_id": storage,
            "subresource": "table",
            "zone": "privatelink.table.core.windows.net",
        },
        "file": {
            "resource_id": storage,
            "subresource": "file",
            "zone": "privatelink.file.core.windows.net",
        },
        "vault": {
            "resource_id": vault,
            "subresource": "vault",
            "zone": "privatelink.vaultcore.azure.net",
        },
    }
    pe = tf.one("azurerm_private_endpoint", "relay")
    assert pe["for_each"] == "${local.private_endpoints}"
    assert pe["subnet_id"] == "${azurerm_subnet.endpoints.id}"
    connection = one(pe["private_service_connection"])
    assert connection["private_connection_resource_id"] == "${each.value.resource_id}"
    assert connection["subresource_names"] == ["${each.value.subresource}"]
    assert connection["is_manual_connection"] is False
    assert one(pe["private_dns_zone_group"])["private_dns_zone_ids"] == [
        "${local.zone_ids[each.key]}"
    ]

    zone = tf.one("azurerm_private_dns_zone", "relay")
    link = tf.one("azurerm_private_dns_zone_virtual_network_link", "relay")
    assert zone["for_each"] == link["for_each"] == "${local.created_zones}"
    assert link["virtual_network_id"] == f"${{{PEERED}.id}}"
    assert link["registration_enabled"] is False
    assert "!contains(keys(var.private_dns_zone_ids), k)" in tf.locals["created_zones"]


# --- secrets and identity ---------------------------------------------------------------------


SECRET_LOOKING = re.compile(
    r"AccountKey=|SharedAccessSignature|InstrumentationKey=|esdb(\+discover)?://|kurrentdb://"
    r"|password|primary_access_key|secondary_access_key|_connection_string\b|\.primary_key",
    re.IGNORECASE,
)


def test_connection_strings_are_key_vault_references(tf: Config, settings: dict[str, str]) -> None:
    reference = tf.locals["key_vault_reference"]
    assert reference == (
        "${{for k, name in local.secret_names : k => "
        '"@Microsoft.KeyVault(SecretUri=${azurerm_key_vault.relay.vault_uri}secrets/${name}/)"}}'
    )
    assert settings["ESDB_RELAY_SOURCE"] == "${local.key_vault_reference.source}"
    assert settings["ESDB_RELAY_TARGET"] == "${local.key_vault_reference.target}"
    assert settings["WEBSITE_CONTENTAZUREFILECONNECTIONSTRING"] == (
        "${local.key_vault_reference.content_storage}"
    )
    assert set(tf.locals["secret_names"]) == {"source", "target", "content_storage"}
    app = tf.one(APP, "relay")
    assert app["key_vault_reference_identity_id"] == IDENTITY_ID
    # Nothing secret-looking in the app settings or connection_string blocks.
    for key, value in settings.items():
        assert not SECRET_LOOKING.search(value), f"app setting {key} looks like a secret: {value}"
    assert "connection_string" not in app
    assert "storage_account_access_key" not in app and "storage_key_vault_secret_id" not in app
    # Secret values are set by the operator: no Terraform resource may hold one (state).
    for rtype in ("azurerm_key_vault_secret", "azurerm_key_vault_key"):
        assert not tf.of(rtype), f"{rtype} would put a secret into the Terraform state"


def test_managed_identity_has_exactly_the_expected_roles(tf: Config) -> None:
    app = tf.one(APP, "relay")
    assert one(app["identity"]) == {"type": "UserAssigned", "identity_ids": [IDENTITY_ID]}
    assert tf.locals["function_roles"] == {
        "checkpoint_table": {
            "role": "Storage Table Data Contributor",
            "scope": "${local.checkpoint_table_id}",
        },
        "chain_queue": {
            "role": "Storage Queue Data Contributor",
            "scope": "${azurerm_storage_queue.chain.id}",
        },
        "poison_queue": {
            "role": "Storage Queue Data Contributor",
            "scope": "${azurerm_storage_queue.poison.id}",
        },
        "key_vault": {"role": "Key Vault Secrets User", "scope": "${azurerm_key_vault.relay.id}"},
        "host_storage": {
            "role": "Storage Blob Data Owner",
            "scope": "${azurerm_storage_account.relay.id}",
        },
        "telemetry": {
            "role": "Monitoring Metrics Publisher",
            "scope": "${azurerm_application_insights.relay.id}",
        },
    }
    assert tf.locals["checkpoint_table_id"] == (
        "${azurerm_storage_account.relay.id}/tableServices/default/tables/${local.checkpoint_table}"
    )
    assignments = tf.of("azurerm_role_assignment")
    assert set(assignments) == {"function", "secrets_officer"}
    function = assignments["function"]
    assert function["for_each"] == "${local.function_roles}"
    assert function["principal_id"] == IDENTITY_PRINCIPAL
    assert function["role_definition_name"] == "${each.value.role}"
    assert function["scope"] == "${each.value.scope}"
    officer = assignments["secrets_officer"]
    assert officer["role_definition_name"] == "Key Vault Secrets Officer"
    assert officer["scope"] == "${azurerm_key_vault.relay.id}"
    assert officer["principal_id"] == "${each.value}"
    # No broad role anywhere in the configuration.
    text = "\n".join(tf.texts.values())
    for broad in ('"Owner"', '"Contributor"', "Storage Account Contributor", "User Access"):
        assert broad not in text, f"{broad} role in the configuration"


def test_connections_are_identity_based(tf: Config, settings: dict[str, str]) -> None:
    app = tf.one(APP, "relay")
    assert app["storage_uses_managed_identity"] is True
    assert settings["AzureWebJobsStorage__accountName"] == "${azurerm_storage_account.relay.name}"
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == CLIENT_ID
    assert "AzureWebJobsStorage" not in settings
    # the chain queue's binding connection (connection="ESDB_RELAY_QUEUE") by identity
    assert settings["ESDB_RELAY_QUEUE__queueServiceUri"] == (
        '${trimsuffix(azurerm_storage_account.relay.primary_queue_endpoint, "/")}'
    )
    assert settings["ESDB_RELAY_QUEUE__credential"] == "managedidentity"
    assert settings["ESDB_RELAY_QUEUE__clientId"] == CLIENT_ID
    assert "ESDB_RELAY_QUEUE" not in settings, "a connection string would win over the identity"
    # the checkpoint store logs in with DefaultAzureCredential, which picks AZURE_CLIENT_ID
    store = settings["ESDB_RELAY_CHECKPOINT_STORE"]
    assert store.startswith("azuretable://${local.checkpoint_table}?account_url=")
    assert "connection_setting" not in store
    assert settings["AZURE_CLIENT_ID"] == CLIENT_ID
    assert tf.locals["client_id"] == "${azurerm_user_assigned_identity.relay.client_id}"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "ClientId=${local.client_id};Authorization=AAD"
    )
    insights = tf.one("azurerm_application_insights", "relay")
    assert insights["local_authentication_enabled"] is False
    assert insights["workspace_id"] == "${azurerm_log_analytics_workspace.relay.id}"


# --- the function app ---------------------------------------------------------------------------


def test_function_app_is_hardened(tf: Config) -> None:
    app = tf.one(APP, "relay")
    assert app["https_only"] is True
    assert app["ftp_publish_basic_authentication_enabled"] is False
    assert app["webdeploy_publish_basic_authentication_enabled"] is False
    assert "auth_settings" not in app and "auth_settings_v2" not in app
    site = site_config(tf)
    assert site["ftps_state"] == "Disabled"
    assert site["minimum_tls_version"] == "1.2"
    assert site["scm_minimum_tls_version"] == "1.2"
    assert site["remote_debugging_enabled"] is False
    assert site["ip_restriction_default_action"] == "Deny"
    assert site["scm_ip_restriction_default_action"] == "Deny"
    assert site["scm_use_main_ip_restriction"] is True
    assert "ip_restriction" not in site and "scm_ip_restriction" not in site
    allow = one(site["dynamic"])["ip_restriction"]
    assert allow["for_each"] == "${var.operator_ip_ranges}"
    assert one(allow["content"])["ip_address"] == "${ip_restriction.value}"
    assert tf.variables["operator_ip_ranges"]["default"] == []
    assert one(site["application_stack"]) == {"python_version": "${var.python_version}"}
    assert site["runtime_scale_monitoring_enabled"] is True  # queue scaling with private storage
    plan = tf.one("azurerm_service_plan", "relay")
    assert (plan["os_type"], plan["sku_name"]) == ("Linux", "EP1")
    assert app["service_plan_id"] == "${azurerm_service_plan.relay.id}"


def _decorators(tree: ast.Module) -> dict[str, ast.Call]:
    """The `@app.<trigger>(...)` decorator call of each function in function_app.py."""
    found: dict[str, ast.Call] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute):
                    found[deco.func.attr] = deco
    return found


def _keywords(call: ast.Call, constants: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kw in call.keywords:
        if isinstance(kw.value, ast.Constant):
            out[kw.arg or ""] = kw.value.value
        elif isinstance(kw.value, ast.Name) and kw.value.id in constants:
            out[kw.arg or ""] = constants[kw.value.id]
        else:
            out[kw.arg or ""] = ast.unparse(kw.value)
    return out


def _module_constants(tree: ast.Module) -> dict[str, str]:
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name) and isinstance(node.value.value, str)
    }


def test_trigger_bindings_find_their_app_settings(settings: dict[str, str]) -> None:
    tree = ast.parse(FUNCTION_APP.read_text())
    constants = _module_constants(tree)
    decorators = _decorators(tree)
    assert set(decorators) == {"timer_trigger", "queue_trigger", "route"}, sorted(decorators)

    schedule = _keywords(decorators["timer_trigger"], constants)["schedule"]
    assert schedule == "%ESDB_RELAY_SCHEDULE%"
    assert settings["ESDB_RELAY_SCHEDULE"] == "${var.schedule}"

    queue = _keywords(decorators["queue_trigger"], constants)
    assert queue["queue_name"] == "%ESDB_RELAY_CHAIN_QUEUE%"
    assert settings["ESDB_RELAY_CHAIN_QUEUE"] == "${azurerm_storage_queue.chain.name}"
    connection = queue["connection"]
    assert connection in settings or f"{connection}__queueServiceUri" in settings, (
        f"the queue trigger's connection {connection} has no app setting"
    )

    route = _keywords(decorators["route"], constants)
    assert route["auth_level"] == "func.AuthLevel.FUNCTION", "the HTTP invoke needs a function key"
    assert settings["ESDB_RELAY_FUNCTION_TIMEOUT"] == "${tostring(var.function_timeout_seconds)}"


def test_every_setting_the_handler_reads_directly_is_set(settings: dict[str, str]) -> None:
    tree = ast.parse(FUNCTION_APP.read_text())
    constants = _module_constants(tree)
    required: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and ast.unparse(node.value) == "os.environ"
            and isinstance(node.ctx, ast.Load)
        ):
            key = node.slice
            if isinstance(key, ast.Constant):
                required.add(key.value)
            elif isinstance(key, ast.Name):
                required.add(constants[key.id])
    assert required, "found no os.environ[...] reads: the parser is wrong"
    missing = sorted(required - set(settings))
    assert not missing, f"function_app.py reads os.environ{missing} but the template sets none"


# Rendered values for the expressions the template's ESDB_RELAY_* settings use; a new expression
# fails this test until it is added here (so the JobConfig check below always covers every one).
RENDERED = {
    "${var.job_id}": "orders-migration",
    "${local.key_vault_reference.source}": "esdb://admin:changeit@source.internal:2113?tls=true",
    "${local.key_vault_reference.target}": "esdb+discover://admin:pw@abc.mesdb.eventstore.cloud:2113",
    "${var.mode}": "ordered",
    "${tostring(var.partitions)}": "1",
    "${tostring(var.shards)}": "1",
    "${tostring(var.slice_max_events)}": "20000",
    "${tostring(var.schedule_seconds)}": "300",
    "${tostring(var.function_timeout_seconds + 300)}": "900",
    "${tostring(var.function_timeout_seconds)}": "600",
    "${var.schedule}": "0 */5 * * * *",
    "${azurerm_storage_queue.chain.name}": "esdb-relay-chain",
    '${trimsuffix(azurerm_storage_account.relay.primary_queue_endpoint, "/")}': (
        "https://stesdbrelay0a1b2c.queue.core.windows.net"
    ),
    "${local.client_id}": "00000000-0000-0000-0000-00000000c1d0",
    "${local.checkpoint_table}": "esdbrelay",
    "${var.function_subnet_cidr}": "10.20.255.0/26",
    '${local.public ? "" : var.peering_remote_range}': "10.20.0.0/16",
    '${local.public ? "" : "true"}': "true",
    "${var.network_mode}": "peered",
    "${local.egress_ip}": "",
    '${trimsuffix(azurerm_storage_account.relay.primary_table_endpoint, "/")}': (
        "https://stesdbrelay0a1b2c.table.core.windows.net"
    ),
}


def _render(value: str) -> str:
    for expression, rendered in RENDERED.items():
        value = value.replace(expression, rendered)
    assert "${" not in value, f"no rendering for {value!r}: add it to RENDERED"
    return value


def test_job_settings_load_in_core(
    tf: Config, settings: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ESDB_RELAY_* settings, once Key Vault resolves the references, are a valid job."""
    from core.config import JobConfig
    from handlers.azure.checkpoint_store import parse_azuretable_url

    for key in list(os.environ):
        if key.startswith("ESDB_RELAY_"):
            monkeypatch.delenv(key)
    relay = {k: _render(v) for k, v in settings.items() if k.startswith("ESDB_RELAY_")}
    for key, value in relay.items():
        monkeypatch.setenv(key, value)
    job = JobConfig.load()
    assert job.job_id == "orders-migration"
    assert (job.mode, job.partitions, job.budget.max_events) == ("ordered", 1, 20000)
    assert job.schedule_seconds == 300
    assert job.source.get_secret_value().startswith("esdb://")
    # the lease follows the function timeout in the handler (core/invocation.py): no setting
    # may pin it past the timeout, where a killed slice's lease would keep the job busy
    assert "ESDB_RELAY_LEASE_TTL_SECONDS" not in relay
    table, options = parse_azuretable_url(job.checkpoint_store)
    assert table == "esdbrelay"
    assert options == {
        "account_url": "https://stesdbrelay0a1b2c.table.core.windows.net",
        "create_table": False,  # the table exists (Terraform) and the role is scoped to it
    }
    # the rendering covers the variables' defaults, so the test runs what an apply would
    defaults = {k: v.get("default") for k, v in tf.variables.items()}
    assert (defaults["mode"], defaults["partitions"]) == ("ordered", 1)
    assert (defaults["slice_max_events"], defaults["function_timeout_seconds"]) == (20000, 600)
    assert defaults["schedule"] == "0 */5 * * * *"


def test_function_timeout_is_one_number_for_host_and_handler(
    tf: Config, settings: dict[str, str]
) -> None:
    assert settings["AzureFunctionsJobHost__functionTimeout"] == "${local.function_timeout}"
    assert tf.locals["function_timeout"] == (
        '${format("%02d:%02d:%02d", floor(var.function_timeout_seconds / 3600), '
        "floor(var.function_timeout_seconds % 3600 / 60), var.function_timeout_seconds % 60)}"
    )
    default = tf.variables["function_timeout_seconds"]["default"]
    hours, rest = divmod(default, 3600)
    host = json.loads((INFRA / "host.json").read_text())
    assert host["functionTimeout"] == f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def test_host_json_for_the_packager() -> None:
    from handlers.cli.packaging import _host_json

    host = json.loads((INFRA / "host.json").read_text())
    assert host["version"] == "2.0"
    bundle = host["extensionBundle"]
    assert bundle["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    assert bundle["version"].startswith("[4.")  # timer and Storage Queue bindings
    queues = host["extensions"]["queues"]
    assert queues["messageEncoding"] == "base64"  # the handler enqueues with TextBase64EncodePolicy
    assert queues["batchSize"] == 1
    assert queues["maxDequeueCount"] >= 1
    assert _host_json(ROOT) == (INFRA / "host.json").read_bytes(), "the packager must ship it"


def test_outputs_for_the_runbook(tf: Config) -> None:
    assert tf.outputs["invoke_url"]["value"].endswith("/api/invoke")
    commands = tf.outputs["set_secret_commands"]["value"]
    assert len(commands) == 3
    for key, command in zip(("source", "target", "content_storage"), commands, strict=True):
        assert f"--name ${{local.secret_names.{key}}}" in command
        assert command.startswith("az keyvault secret set ")
    assert tf.outputs["checkpoint_store"]["value"] == (
        "${local.app_settings.ESDB_RELAY_CHECKPOINT_STORE}"
    )


# --- variable validations, evaluated by terraform -------------------------------------------------

VALID = {
    "location": "westeurope",
    "peered_vnet_id": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/"
    "rg-network/providers/Microsoft.Network/virtualNetworks/vnet-esc",
    "peering_remote_range": "10.20.0.0/16",
    "function_subnet_cidr": "10.20.8.0/26",
    "private_endpoint_subnet_cidr": "10.20.9.0/28",
    "job_id": "orders-migration",
}


@pytest.fixture(scope="module")
def variables_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("azure-variables")
    shutil.copy(INFRA / "variables.tf", folder / "variables.tf")
    (folder / "relay.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    proc = terraform("init", "-input=false", "-no-color", cwd=folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return folder


def plan(folder: Path, **overrides: Any) -> tuple[bool, str]:
    values = {k: v for k, v in {**VALID, **overrides}.items() if v is not None}  # None: unset
    (folder / "case.tfvars.json").write_text(json.dumps(values))
    proc = terraform(
        "plan", "-input=false", "-no-color", "-lock=false", "-var-file=case.tfvars.json", cwd=folder
    )
    text = " ".join(proc.stdout.replace("│", " ").split() + proc.stderr.replace("│", " ").split())
    return proc.returncode == 0, text


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "function_subnet_cidr": "10.20.255.240/28",
            "private_endpoint_subnet_cidr": "10.21.0.0/28",
        },
        {"peering_remote_range": "10.20.8.0/24", "function_subnet_cidr": "10.20.8.0/24"},
        {"mode": "partitioned", "partitions": 8},
        {"schedule": "30 0 */2 * * Mon-Fri", "slice_max_events": 1},
        {"operator_ip_ranges": ["203.0.113.7/32"], "package_path": "relay.zip"},
        {"job_settings": {"ESDB_RELAY_FILTERS__EXCLUDE_STREAMS": '["^tmp-"]'}},
        # the public topology: no peering range, the subnet anywhere in the VNet
        {
            "network_mode": "public",
            "peering_remote_range": None,
            "function_subnet_cidr": "10.99.8.0/26",
            "cluster_port": 443,
        },
    ],
    ids=lambda o: ",".join(o) or "baseline",
)
def test_valid_inputs_pass(variables_only: Path, overrides: dict[str, Any]) -> None:
    ok, text = plan(variables_only, **overrides)
    assert ok, text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"function_subnet_cidr": "10.21.8.0/26"}, "must lie inside peering_remote_range"),
        ({"function_subnet_cidr": "10.20.0.0/15"}, "must lie inside peering_remote_range"),
        ({"function_subnet_cidr": "10.20.8.5/26"}, "no host bits set"),
        ({"function_subnet_cidr": "10.20.8.0/29"}, "from /16 to /28"),
        ({"function_subnet_cidr": "not-a-cidr"}, "must be an IPv4 CIDR"),
        ({"peering_remote_range": "10.20.0.1/16"}, "peering_remote_range must be an IPv4 CIDR"),
        ({"private_endpoint_subnet_cidr": "10.20.8.16/28"}, "must not overlap"),
        ({"private_endpoint_subnet_cidr": "10.20.0.0/20"}, "must not overlap"),
        ({"schedule": "*/5 * * * *"}, "six space-separated fields"),
        ({"schedule": "* */5 * * * *"}, "seconds) field must be one number"),
        ({"slice_max_events": 0}, "slice_max_events must be a whole number"),
        ({"slice_max_events": 2.5}, "slice_max_events must be a whole number"),
        ({"mode": "parallel"}, 'mode must be "ordered" or "partitioned"'),
        ({"partitions": 4}, "more than one partition needs"),
        ({"job_id": "-orders"}, "job_id must be 1-128"),
        ({"peered_vnet_id": "vnet-esc"}, "peered_vnet_id must be a VNet resource ID"),
        ({"operator_ip_ranges": ["0.0.0.0/0"]}, "never 0.0.0.0/0"),
        ({"job_settings": {"ESDB_RELAY_SOURCE": "x"}}, "must not set what the template wires"),
        ({"job_settings": {"ESDB_RELAY_X": "esdb://u:p@h:2113"}}, "must not hold credentials"),
        ({"package_path": "missing.zip"}, "package_path must name an existing .zip"),
        ({"private_dns_zone_ids": {"dfs": "x"}}, "keys must be among"),
        ({"name": "Relay_1"}, "name must be 3-13 lowercase"),
        ({"network_mode": "nat"}, 'network_mode must be "peered"'),
        ({"network_mode": "public"}, 'unset with network_mode "public"'),
        ({"peering_remote_range": None}, "peering_remote_range must be an IPv4 CIDR"),
        ({"cluster_port": 0}, "cluster_port must be a TCP port"),
    ],
    ids=lambda v: v if isinstance(v, str) else ",".join(v),
)
def test_invalid_inputs_are_refused(
    variables_only: Path, overrides: dict[str, Any], message: str
) -> None:
    ok, text = plan(variables_only, **overrides)
    assert not ok, f"terraform accepted {overrides}"
    assert "Invalid value for variable" in text, text
    assert message in text, text


def evaluate(folder: Path, expression: str, **overrides: Any) -> str:
    """What terraform makes of `expression` (variables only), via `terraform console`."""
    values = {k: v for k, v in {**VALID, **overrides}.items() if v is not None}  # None: unset
    (folder / "case.tfvars.json").write_text(json.dumps(values))
    binary = shutil.which("terraform")
    assert binary is not None
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_CLI_CONFIG_FILE": os.devnull}
    proc = subprocess.run(
        [binary, "console", "-var-file=case.tfvars.json"],
        cwd=folder,
        env=env,
        input=expression + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


def _expression(value: str) -> str:
    assert value.startswith("${") and value.endswith("}"), value
    return value[2:-1]


@pytest.mark.parametrize(
    ("seconds", "shown"), [(600, "00:10:00"), (3599, "00:59:59"), (3600, "01:00:00")]
)
def test_function_timeout_renders_as_a_timespan(
    tf: Config, variables_only: Path, seconds: int, shown: str
) -> None:
    expression = _expression(tf.locals["function_timeout"])
    assert evaluate(variables_only, expression, function_timeout_seconds=seconds) == f'"{shown}"'


@pytest.mark.parametrize(
    ("local", "spaces", "overrides", "inside"),
    [
        ("function_subnet_in_vnet", ["10.20.0.0/16"], {}, True),
        ("function_subnet_in_vnet", ["10.30.0.0/16", "10.20.8.0/24"], {}, True),
        ("function_subnet_in_vnet", ["10.30.0.0/16"], {}, False),
        ("function_subnet_in_vnet", ["10.20.8.0/27"], {}, False),
        ("endpoint_subnet_in_vnet", ["10.20.0.0/16"], {}, True),
        ("endpoint_subnet_in_vnet", ["10.20.8.0/24"], {}, False),
        ("peering_range_in_vnet", ["10.20.0.0/16"], {}, True),
        ("peering_range_in_vnet", ["10.20.0.0/17"], {}, False),
        ("peering_range_in_vnet", ["10.0.0.0/8"], {"peering_remote_range": "10.20.0.0/16"}, True),
    ],
)
def test_vnet_address_space_preconditions_evaluate(
    tf: Config,
    variables_only: Path,
    local: str,
    spaces: list[str],
    overrides: dict[str, Any],
    inside: bool,
) -> None:
    """The preconditions' containment logic, with the VNet's address space given literally."""
    expression = _expression(tf.locals[local])
    assert "local.vnet_address_space" in expression
    literal = expression.replace("local.vnet_address_space", json.dumps(spaces))
    assert evaluate(variables_only, literal, **overrides) == str(inside).lower()


def test_the_validated_inputs_have_validation_blocks(tf: Config) -> None:
    for name in (
        "network_mode",
        "cluster_port",
        "peered_vnet_id",
        "peering_remote_range",
        "function_subnet_cidr",
        "private_endpoint_subnet_cidr",
        "schedule",
        "slice_max_events",
        "mode",
        "partitions",
        "shards",
        "job_id",
        "package_path",
    ):
        assert tf.variables[name].get("validation"), f"variable {name} has no validation"
    # the subnet-in-peering-range rule compares the two variables, as the text above explains
    rules = [v["condition"] for v in tf.variables["function_subnet_cidr"]["validation"]]
    assert any("var.peering_remote_range" in rule and "cidrsubnet" in rule for rule in rules)


# --- checkov ---------------------------------------------------------------------------------

# Each suppression is written in the template next to the resource, with its reason.
SUPPRESSED = {
    "CKV2_AZURE_40",  # Shared Key: the EP content share (Azure Files) mounts only with the key
    "CKV2_AZURE_1",  # customer-managed key for checkpoints: out of scope
    "CKV_AZURE_33",  # queue logging: diagnostic settings instead of classic analytics
    "CKV_AZURE_43",  # computed storage account name: enforced by a precondition
    "CKV_AZURE_212",  # one always-ready instance: slices are serialised by the lease
    "CKV_AZURE_225",  # zone redundancy needs three always-ready instances
    "CKV_AZURE_221",  # public HTTPS endpoint behind ip_restriction and function keys
}


def test_checkov_passes_with_only_reasoned_suppressions() -> None:
    report = run_checkov(INFRA, "terraform")
    assert not report.failed, "checkov failed:\n" + "\n".join(
        f"{c.check_id} {c.resource} ({c.file})" for c in report.failed
    )
    for check in report.skipped:
        assert check.reason and len(check.reason) > 40, f"{check.check_id} has no real reason"
    assert {c.check_id for c in report.skipped} == SUPPRESSED
    passed = {(c.check_id, c.resource) for c in report.passed}
    for expected in (
        ("CKV_AZURE_59", "azurerm_storage_account.relay"),  # no public access
        ("CKV2_AZURE_33", "azurerm_storage_account.relay"),  # private endpoint
        ("CKV_AZURE_189", "azurerm_key_vault.relay"),  # vault: no public access
        ("CKV2_AZURE_32", "azurerm_key_vault.relay"),  # vault: private endpoint
        ("CKV_AZURE_110", "azurerm_key_vault.relay"),  # purge protection
        ("CKV_AZURE_70", "azurerm_linux_function_app.relay"),  # HTTPS only
        ("CKV_AZURE_145", "azurerm_linux_function_app.relay"),  # TLS 1.2
        ("CKV2_AZURE_31", "azurerm_subnet.function"),  # NSG on the subnet
        # the function's NSG, with its input-dependent rules, was read (no open inbound port)
        ("CKV_AZURE_9", "azurerm_network_security_group.function"),
        ("CKV_AZURE_10", "azurerm_network_security_group.function"),
        ("CKV_AZURE_77", "azurerm_network_security_group.function"),
        ("CKV_AZURE_160", "azurerm_network_security_group.function"),
    ):
        assert expected in passed, f"checkov did not pass {expected}"


def test_alerts_match_the_aws_alarms(tf: Config) -> None:
    """Lag, failed slices, no slice for N minutes, stalled, dead-lettered events, dead letters:
    log search alerts on the traces and custom metrics the relay and the host write, notifying
    var.alert_action_group_ids."""
    (alerts,) = tf.of("azurerm_monitor_scheduled_query_rules_alert_v2").values()
    assert alerts["for_each"] == "${local.alerts}"
    assert alerts["scopes"] == ["${azurerm_application_insights.relay.id}"]
    assert "${var.alert_action_group_ids}" in json.dumps(alerts["dynamic"])
    text = tf.texts["monitoring.tf"]
    for name in ("lag", "failed_slices", "no_slice", "dead_letters", "stalled", "dead_lettered"):
        assert f"    {name} = {{" in text, name
    assert "e.slice.status" in text  # core/logs.py's line (the figures: test_azure_monitoring.py)
    assert "Moving message to queue" in text and "${local.poison_queue}" in text
    assert 'operator    = "LessThan"' in text  # no slice: fewer than one in the window


def test_shards_deploy_a_chain_each_from_one_setting(tf: Config, settings: dict[str, str]) -> None:
    """`shards` (ESDB_RELAY_SHARDS) deploys K chains: an instance takes a chain message per
    shard at once (the queue trigger's batch size), run by as many Python threads and one for
    the tick, and the plan may burst to an instance per shard (20 at most)."""
    variable = tf.variables["shards"]
    assert variable["default"] == 1
    assert "global order is NOT kept across shards" in variable["description"]
    assert settings["ESDB_RELAY_SHARDS"] == "${tostring(var.shards)}"
    assert (
        settings["AzureFunctionsJobHost__extensions__queues__batchSize"]
        == "${tostring(min(var.shards, 32))}"
    )
    assert settings["PYTHON_THREADPOOL_THREAD_COUNT"] == "${tostring(min(var.shards + 1, 32))}"
    plan = tf.one("azurerm_service_plan", "relay")
    assert (
        plan["maximum_elastic_worker_count"] == "${max(var.maximum_instances, min(var.shards, 20))}"
    )
    host = json.loads((INFRA / "host.json").read_text())
    assert host["extensions"]["queues"]["batchSize"] == 1  # one chain: one message at a time

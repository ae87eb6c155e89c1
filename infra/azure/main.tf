# esdb-relay on Azure Functions (Elastic Premium EP1), inside the VNet that is directly peered
# with Event Store Cloud. See docs/deploy-azure.md for the steps and why each piece is here.

data "azurerm_client_config" "current" {}

locals {
  # The topology (variables.tf, network_mode): peered, or public through a NAT gateway.
  public = var.network_mode == "public"
  # The static address a public cluster's allowlist names (network.tf); "" when peered.
  egress_ip = local.public ? azurerm_public_ip.egress[0].ip_address : ""

  # /subscriptions/<sub>/resourceGroups/<group>/providers/Microsoft.Network/virtualNetworks/<name>
  peered_vnet = {
    subscription_id     = split("/", var.peered_vnet_id)[2]
    resource_group_name = split("/", var.peered_vnet_id)[4]
    name                = split("/", var.peered_vnet_id)[8]
  }

  # Globally unique names (storage account, Key Vault, function app) get a stable suffix.
  suffix = substr(sha1("${data.azurerm_client_config.current.subscription_id}/${var.resource_group_name}/${var.name}"), 0, 6)
  names = {
    function_app    = "func-${var.name}-${local.suffix}"
    plan            = "plan-${var.name}"
    identity        = "id-${var.name}"
    storage_account = "st${replace(var.name, "-", "")}${local.suffix}"
    key_vault       = "kv-${var.name}-${local.suffix}"
    log_analytics   = "log-${var.name}"
    app_insights    = "appi-${var.name}"
    function_subnet = "snet-${var.name}-func"
    endpoint_subnet = "snet-${var.name}-pe"
  }

  # Relay resources in the storage account.
  checkpoint_table = "esdbrelay"                   # azuretable://esdbrelay
  chain_queue      = "${var.name}-chain"           # ESDB_RELAY_CHAIN_QUEUE
  poison_queue     = "${local.chain_queue}-poison" # where the queue trigger parks failed messages
  content_share    = "${local.names.function_app}-content"

  # Key Vault secrets: names only. Their values are set by the operator, never by Terraform, so
  # no connection string ever reaches the Terraform state.
  secret_names = {
    source          = "esdb-relay-source"          # source EventStoreDB connection string
    target          = "esdb-relay-target"          # target (Event Store Cloud) connection string
    content_storage = "esdb-relay-content-storage" # the storage connection string for the app's content share
  }
  key_vault_reference = { for k, name in local.secret_names : k => "@Microsoft.KeyVault(SecretUri=${azurerm_key_vault.relay.vault_uri}secrets/${name}/)" }

  tags = merge({ application = "esdb-relay", job = var.job_id }, var.tags)
}

resource "azurerm_resource_group" "relay" {
  name     = var.resource_group_name
  location = var.location
  tags     = local.tags
}

resource "azurerm_user_assigned_identity" "relay" {
  name                = local.names.identity
  location            = azurerm_resource_group.relay.location
  resource_group_name = azurerm_resource_group.relay.name
  tags                = local.tags
}

# One storage account, reachable only through private endpoints in the peered VNet:
# - Table: the relay's checkpoints (azuretable://esdbrelay), via the function's managed identity;
# - Queue: the chain queue that runs the next slice at once, via the managed identity;
# - Blob: the Functions host's own storage (keys, timer locks), via the managed identity;
# - File: the Elastic Premium app's content share, mounted over the VNet, which `az functionapp
#   deployment source config-zip` writes to. Azure Files has no managed-identity mount, so the
#   share is the one thing reached with the account key; its connection string is a Key Vault
#   secret set by the operator.

resource "azurerm_storage_account" "relay" {
  #checkov:skip=CKV2_AZURE_40:Shared Key stays on for one reason: the Elastic Premium content share (Azure Files, WEBSITE_CONTENTAZUREFILECONNECTIONSTRING) can only be mounted with the account key. The host, checkpoints and chain queue use Entra ID (default_to_oauth_authentication), and the account has no public endpoint.
  #checkov:skip=CKV2_AZURE_1:Encrypted with Microsoft-managed keys plus infrastructure (double) encryption; a customer-managed key would need its own Key Vault key and rotation, out of scope for a migration relay's checkpoints.
  #checkov:skip=CKV_AZURE_43:The name is computed ("st" + name without hyphens + a 6-hex-digit suffix from the subscription and resource group), which checkov cannot evaluate; the precondition below enforces Azure's 3-24 lowercase letters and digits at plan time.
  #checkov:skip=CKV_AZURE_33:Queue logging uses Azure Monitor diagnostic settings (azurerm_monitor_diagnostic_setting.storage["queue"]), not the classic Storage Analytics queue_properties block, which azurerm 5 removed.
  name                              = local.names.storage_account
  resource_group_name               = azurerm_resource_group.relay.name
  location                          = azurerm_resource_group.relay.location
  account_kind                      = "StorageV2"
  account_tier                      = "Standard"
  account_replication_type          = var.storage_replication_type
  access_tier                       = "Hot"
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  public_network_access_enabled     = false
  allow_nested_items_to_be_public   = false
  shared_access_key_enabled         = true
  default_to_oauth_authentication   = true
  cross_tenant_replication_enabled  = false
  infrastructure_encryption_enabled = true
  local_user_enabled                = false
  sftp_enabled                      = false
  allowed_copy_scope                = "PrivateLink"
  tags                              = local.tags

  network_rules {
    default_action = "Deny"
    bypass         = ["AzureServices"]
  }

  blob_properties {
    delete_retention_policy {
      days = 7
    }
    container_delete_retention_policy {
      days = 7
    }
  }

  share_properties {
    retention_policy {
      days = 7
    }
  }

  sas_policy {
    expiration_period = "00.01:00:00"
    expiration_action = "Log"
  }

  lifecycle {
    precondition {
      condition     = can(regex("^[a-z0-9]{3,24}$", local.names.storage_account))
      error_message = "storage account name ${local.names.storage_account} is not 3-24 lowercase letters and digits."
    }
  }
}

# Created through Resource Manager (storage_account_id), so Terraform needs no network path to
# the private account.
resource "azurerm_storage_queue" "chain" {
  name               = local.chain_queue
  storage_account_id = azurerm_storage_account.relay.id
}

resource "azurerm_storage_queue" "poison" {
  name               = local.poison_queue
  storage_account_id = azurerm_storage_account.relay.id
}

resource "azurerm_storage_share" "content" {
  name               = local.content_share
  storage_account_id = azurerm_storage_account.relay.id
  quota              = 5
  enabled_protocol   = "SMB"
}

# azurerm_storage_table creates tables through the table endpoint (data plane), which is private.
# The table is created through Resource Manager instead, so the role below can be scoped to it.
resource "azurerm_resource_group_template_deployment" "checkpoint_table" {
  name                = "${local.names.storage_account}-table"
  resource_group_name = azurerm_resource_group.relay.name
  deployment_mode     = "Incremental"
  template_content = jsonencode({
    "$schema"      = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
    contentVersion = "1.0.0.0"
    resources = [{
      type       = "Microsoft.Storage/storageAccounts/tableServices/tables"
      apiVersion = "2023-05-01"
      name       = "${azurerm_storage_account.relay.name}/default/${local.checkpoint_table}"
    }]
  })
}

locals {
  checkpoint_table_id = "${azurerm_storage_account.relay.id}/tableServices/default/tables/${local.checkpoint_table}"
}

# Who read, wrote or deleted what in the relay's tables, queues and blobs.
resource "azurerm_monitor_diagnostic_setting" "storage" {
  for_each                   = toset(["blob", "queue", "table", "file"])
  name                       = "${var.name}-${each.key}"
  target_resource_id         = "${azurerm_storage_account.relay.id}/${each.key}Services/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.relay.id

  enabled_log {
    category_group = "audit"
  }
}

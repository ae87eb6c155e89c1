# The connection strings live in Key Vault and reach the function only as Key Vault references
# (@Microsoft.KeyVault(SecretUri=…)) resolved by the platform with the function's identity.
# Terraform creates the vault but not the secrets: their values would otherwise be stored in the
# Terraform state. The operator sets them (docs/deploy-azure.md); `terraform output
# set_secret_commands` prints the commands.

resource "azurerm_key_vault" "relay" {
  name                          = local.names.key_vault
  location                      = azurerm_resource_group.relay.location
  resource_group_name           = azurerm_resource_group.relay.name
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = "standard"
  rbac_authorization_enabled    = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = 90
  public_network_access_enabled = false
  tags                          = local.tags

  network_acls {
    default_action = "Deny"
    bypass         = "None"
  }

  lifecycle {
    precondition {
      condition     = can(regex("^[a-zA-Z](-?[a-zA-Z0-9])+$", local.names.key_vault)) && length(local.names.key_vault) <= 24
      error_message = "Key Vault name ${local.names.key_vault} is not 3-24 letters, digits and single hyphens starting with a letter."
    }
  }
}

resource "azurerm_monitor_diagnostic_setting" "key_vault" {
  name                       = "${var.name}-key-vault"
  target_resource_id         = azurerm_key_vault.relay.id
  log_analytics_workspace_id = azurerm_log_analytics_workspace.relay.id

  enabled_log {
    category_group = "audit"
  }
}

output "resource_group_name" {
  value = azurerm_resource_group.relay.name
}

output "function_app_name" {
  value = azurerm_linux_function_app.relay.name
}

output "invoke_url" {
  description = "POST a JSON payload here with the function key (x-functions-key) for a manual backfill, status or preflight."
  value       = "https://${azurerm_linux_function_app.relay.default_hostname}/api/invoke"
}

output "function_subnet_id" {
  value = azurerm_subnet.function.id
}

output "egress_ip" {
  description = "network_mode = \"public\": the static address the function's connections to the cluster leave from. Add it to the cluster's IP allowlist (docs/deploy-azure.md). Null when peered."
  value       = local.public ? azurerm_public_ip.egress[0].ip_address : null
}

output "managed_identity_client_id" {
  value = azurerm_user_assigned_identity.relay.client_id
}

output "managed_identity_principal_id" {
  value = azurerm_user_assigned_identity.relay.principal_id
}

output "storage_account_name" {
  value = azurerm_storage_account.relay.name
}

output "checkpoint_store" {
  description = "ESDB_RELAY_CHECKPOINT_STORE of the function (for `esdb-relay status` from inside the VNet)."
  value       = local.app_settings.ESDB_RELAY_CHECKPOINT_STORE
}

output "chain_queue" {
  value = azurerm_storage_queue.chain.name
}

output "key_vault_name" {
  value = azurerm_key_vault.relay.name
}

output "key_vault_secret_names" {
  description = "The secrets the operator sets; the function reads them through Key Vault references."
  value       = local.secret_names
}

output "set_secret_commands" {
  description = "Run from a machine that reaches the vault's private endpoint, as a Key Vault Secrets Officer. The values never pass through Terraform."
  value = [
    "az keyvault secret set --vault-name ${azurerm_key_vault.relay.name} --name ${local.secret_names.source} --value \"$(cat source-connection-string.txt)\" --output none",
    "az keyvault secret set --vault-name ${azurerm_key_vault.relay.name} --name ${local.secret_names.target} --value \"$(cat target-connection-string.txt)\" --output none",
    "az keyvault secret set --vault-name ${azurerm_key_vault.relay.name} --name ${local.secret_names.content_storage} --value \"$(az storage account show-connection-string --resource-group ${azurerm_resource_group.relay.name} --name ${azurerm_storage_account.relay.name} --query connectionString --output tsv)\" --output none",
  ]
}

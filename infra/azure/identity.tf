# The function app runs as one user-assigned managed identity (created before the app, so its
# roles exist when the app first starts). Each role is scoped to the one resource that needs it.

locals {
  function_roles = {
    # The checkpoint store reads and conditionally writes entities in its one table.
    checkpoint_table = { role = "Storage Table Data Contributor", scope = local.checkpoint_table_id }
    # The queue trigger reads and deletes chain messages; the handler enqueues the next slice.
    chain_queue = { role = "Storage Queue Data Contributor", scope = azurerm_storage_queue.chain.id }
    # The queue trigger moves a message that failed maxDequeueCount times here.
    poison_queue = { role = "Storage Queue Data Contributor", scope = azurerm_storage_queue.poison.id }
    # Key Vault references: read the connection strings' secret values.
    key_vault = { role = "Key Vault Secrets User", scope = azurerm_key_vault.relay.id }
    # The Functions host's own storage (AzureWebJobsStorage over Entra ID): function keys and
    # timer/singleton locks in containers it creates, hence account scope (Microsoft's documented
    # role for identity-based host storage).
    host_storage = { role = "Storage Blob Data Owner", scope = azurerm_storage_account.relay.id }
    # Telemetry to Application Insights with Entra ID (local authentication is off).
    telemetry = { role = "Monitoring Metrics Publisher", scope = azurerm_application_insights.relay.id }
  }
}

resource "azurerm_role_assignment" "function" {
  for_each             = local.function_roles
  scope                = each.value.scope
  role_definition_name = each.value.role
  principal_id         = azurerm_user_assigned_identity.relay.principal_id
  principal_type       = "ServicePrincipal"
  description          = "esdb-relay function ${var.name}: ${each.key}"

  depends_on = [azurerm_resource_group_template_deployment.checkpoint_table]
}

# The people or pipelines that set the secrets' values.
resource "azurerm_role_assignment" "secrets_officer" {
  for_each             = toset(var.secrets_officer_principal_ids)
  scope                = azurerm_key_vault.relay.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = each.value
  description          = "esdb-relay ${var.name}: sets the connection string secrets"
}

# Logs: each slice writes one JSON line with its figures; the host sends them to Application
# Insights (workspace-based), authenticated with the function's managed identity.

resource "azurerm_log_analytics_workspace" "relay" {
  name                = local.names.log_analytics
  location            = azurerm_resource_group.relay.location
  resource_group_name = azurerm_resource_group.relay.name
  sku                 = "PerGB2018"
  retention_in_days   = 90
  tags                = local.tags
}

resource "azurerm_application_insights" "relay" {
  name                         = local.names.app_insights
  location                     = azurerm_resource_group.relay.location
  resource_group_name          = azurerm_resource_group.relay.name
  workspace_id                 = azurerm_log_analytics_workspace.relay.id
  application_type             = "other"
  local_authentication_enabled = false
  tags                         = local.tags
}

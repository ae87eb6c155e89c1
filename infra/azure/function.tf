# The Functions app (handlers/azure/function_app.py, Python v2 model) on Elastic Premium EP1.
#
# Why Elastic Premium and not Flex Consumption: Flex would scale to zero, but azurerm's
# azurerm_function_app_flex_consumption (through v5.2) cannot express an identity-only app: with
# storage_authentication_type = *AssignedIdentity it still injects an AzureWebJobsStorage
# connection string with an empty account key, which the host then uses
# (hashicorp/terraform-provider-azurerm#29693, #30732), and it has no
# key_vault_reference_identity_id for Key Vault references (#31439). azurerm_linux_function_app
# on EP1 has all of it: regional VNet integration with vnet_route_all_enabled, identity-based
# host storage, Key Vault references through a user-assigned identity, and runtime scale
# monitoring so queue triggers scale while the queue is private. The price is one always-ready
# instance; slices are serialised by the job's lease anyway.

locals {
  function_timeout = format("%02d:%02d:%02d", floor(var.function_timeout_seconds / 3600), floor(var.function_timeout_seconds % 3600 / 60), var.function_timeout_seconds % 60)
  client_id        = azurerm_user_assigned_identity.relay.client_id

  # Every app setting the template wires; var.job_settings (validated not to touch these) adds more.
  relay_app_settings = {
    # Host storage over Entra ID with the user-assigned identity.
    AzureWebJobsStorage__accountName = azurerm_storage_account.relay.name
    AzureWebJobsStorage__credential  = "managedidentity"
    AzureWebJobsStorage__clientId    = local.client_id

    # The content share (zip deploy target), mounted over the VNet; its connection string is a
    # Key Vault reference, so share validation at configuration time is skipped.
    WEBSITE_CONTENTAZUREFILECONNECTIONSTRING = local.key_vault_reference.content_storage
    WEBSITE_CONTENTSHARE                     = azurerm_storage_share.content.name
    WEBSITE_CONTENTOVERVNET                  = "1"
    WEBSITE_SKIP_CONTENTSHARE_VALIDATION     = "1"
    WEBSITE_RUN_FROM_PACKAGE                 = "1"

    # host.json's functionTimeout, kept equal to the handler's idea of its time budget.
    AzureFunctionsJobHost__functionTimeout = local.function_timeout
    # A sharded job's chains: an instance takes a queue message per shard at once (host.json's
    # batchSize, 1 for one chain; 32 at most), run by as many Python worker threads and one more.
    AzureFunctionsJobHost__extensions__queues__batchSize = tostring(min(var.shards, 32))
    PYTHON_THREADPOOL_THREAD_COUNT                       = tostring(min(var.shards + 1, 32))
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING            = "ClientId=${local.client_id};Authorization=AAD"
    # DefaultAzureCredential (the checkpoint store's account_url login) picks this identity.
    AZURE_CLIENT_ID = local.client_id

    # The relay job (core/config.py); connection strings only as Key Vault references.
    ESDB_RELAY_JOB_ID             = var.job_id
    ESDB_RELAY_SOURCE             = local.key_vault_reference.source
    ESDB_RELAY_TARGET             = local.key_vault_reference.target
    ESDB_RELAY_CHECKPOINT_STORE   = "azuretable://${local.checkpoint_table}?account_url=${trimsuffix(azurerm_storage_account.relay.primary_table_endpoint, "/")}&create_table=false"
    ESDB_RELAY_MODE               = var.mode
    ESDB_RELAY_PARTITIONS         = tostring(var.partitions)
    ESDB_RELAY_SHARDS             = tostring(var.shards)
    ESDB_RELAY_BUDGET__MAX_EVENTS = tostring(var.slice_max_events)
    ESDB_RELAY_SCHEDULE_SECONDS   = tostring(var.schedule_seconds)

    # Triggers (function_app.py): the timer's NCRONTAB, the chain queue and its identity-based
    # connection (ESDB_RELAY_QUEUE__*), and the time the handler may budget for one slice.
    ESDB_RELAY_SCHEDULE               = var.schedule
    ESDB_RELAY_CHAIN_QUEUE            = azurerm_storage_queue.chain.name
    ESDB_RELAY_QUEUE__queueServiceUri = trimsuffix(azurerm_storage_account.relay.primary_queue_endpoint, "/")
    ESDB_RELAY_QUEUE__credential      = "managedidentity"
    ESDB_RELAY_QUEUE__clientId        = local.client_id
    ESDB_RELAY_FUNCTION_TIMEOUT       = tostring(var.function_timeout_seconds)

    # The preflight action checks the function's subnet lies inside the peering range; the app
    # is integrated into the directly peered VNet (no gateway transit on Event Store Cloud links).
    # Public: it checks the egress IP, the cluster's public address and its allowlist instead.
    ESDB_RELAY_PREFLIGHT__SUBNETS              = var.function_subnet_cidr
    ESDB_RELAY_PREFLIGHT__PEERING_CIDR         = local.public ? "" : var.peering_remote_range
    ESDB_RELAY_PREFLIGHT__CLOUD                = "azure"
    ESDB_RELAY_PREFLIGHT__VNET_PEERED_DIRECTLY = local.public ? "" : "true"
    ESDB_RELAY_PREFLIGHT__NETWORK_MODE         = var.network_mode
    ESDB_RELAY_PREFLIGHT__EGRESS_IPS           = local.egress_ip
  }
  app_settings = merge(var.job_settings, local.relay_app_settings)
}

resource "azurerm_service_plan" "relay" {
  #checkov:skip=CKV_AZURE_212:One always-ready Elastic Premium instance is enough: the job's lease lets one slice run at a time, and the plan bursts to maximum_instances for overlapping triggers.
  #checkov:skip=CKV_AZURE_225:Zone redundancy needs at least three always-ready instances for a job that runs one slice at a time; a zone outage delays the next slice, and the checkpoint makes it resume where it stopped.
  name                         = local.names.plan
  location                     = azurerm_resource_group.relay.location
  resource_group_name          = azurerm_resource_group.relay.name
  os_type                      = "Linux"
  sku_name                     = "EP1"
  maximum_elastic_worker_count = max(var.maximum_instances, min(var.shards, 20))
  tags                         = local.tags
}

resource "azurerm_linux_function_app" "relay" {
  #checkov:skip=CKV_AZURE_221:The HTTPS endpoint stays public so an operator can invoke a backfill (function key, HTTP trigger at FUNCTION auth level) and zip-deploy (Entra ID) from outside the VNet; ip_restriction denies every address but operator_ip_ranges, on the app and its SCM site.
  name                = local.names.function_app
  location            = azurerm_resource_group.relay.location
  resource_group_name = azurerm_resource_group.relay.name
  service_plan_id     = azurerm_service_plan.relay.id

  storage_account_name          = azurerm_storage_account.relay.name
  storage_uses_managed_identity = true
  builtin_logging_enabled       = false
  functions_extension_version   = "~4"

  https_only                                     = true
  public_network_access_enabled                  = true
  ftp_publish_basic_authentication_enabled       = false
  webdeploy_publish_basic_authentication_enabled = false
  client_certificate_enabled                     = false

  # Regional VNet integration into the delegated subnet of the directly peered VNet.
  virtual_network_subnet_id = azurerm_subnet.function.id

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.relay.id]
  }
  key_vault_reference_identity_id = azurerm_user_assigned_identity.relay.id

  site_config {
    application_stack {
      python_version = var.python_version
    }

    # All outbound traffic (Event Store Cloud, storage, Key Vault references, the content
    # share) goes through the VNet, its private DNS zones and the subnet's NSG.
    vnet_route_all_enabled           = true
    runtime_scale_monitoring_enabled = true
    elastic_instance_minimum         = 1
    pre_warmed_instance_count        = 1

    ftps_state               = "Disabled"
    minimum_tls_version      = "1.2"
    scm_minimum_tls_version  = "1.2"
    http2_enabled            = true
    remote_debugging_enabled = false

    application_insights_connection_string = azurerm_application_insights.relay.connection_string

    ip_restriction_default_action     = "Deny"
    scm_ip_restriction_default_action = "Deny"
    scm_use_main_ip_restriction       = true

    dynamic "ip_restriction" {
      for_each = var.operator_ip_ranges
      content {
        name       = "operator-${ip_restriction.key}"
        priority   = 100 + ip_restriction.key
        action     = "Allow"
        ip_address = ip_restriction.value
      }
    }
  }

  app_settings = local.app_settings
  tags         = local.tags

  # The identity's roles must exist before the host first reaches storage and Key Vault, and
  # the private endpoints and their DNS before the content share is mounted over the VNet.
  depends_on = [
    azurerm_role_assignment.function,
    azurerm_private_endpoint.relay,
    azurerm_private_dns_zone_virtual_network_link.relay,
    azurerm_subnet_network_security_group_association.function,
    azurerm_subnet_nat_gateway_association.function,
  ]
}

# Optional one-command deploy: `terraform apply -var package_path=dist/esdb-relay-azure-….zip`.
# The az CLI is the interpreter and the zip's path its last argument: no shell in between.
resource "terraform_data" "deploy_package" {
  count            = var.package_path == null ? 0 : 1
  triggers_replace = [azurerm_linux_function_app.relay.id, filesha256(var.package_path)]

  provisioner "local-exec" {
    interpreter = [
      "az", "functionapp", "deployment", "source", "config-zip",
      "--resource-group", azurerm_resource_group.relay.name,
      "--name", azurerm_linux_function_app.relay.name,
      "--src",
    ]
    command = abspath(var.package_path)
  }
}

# The function's subnet and the private endpoints' subnet are created in the VNet that Event Store
# Cloud peers with. Azure peering links from Event Store Cloud have "Allow gateway transit"
# disabled, so a VNet peered to that VNet (hub and spoke) cannot reach the cluster: the function
# must be integrated into a subnet of the directly peered VNet, inside the peering's one range.
#
# network_mode = "public": a public cluster with an IP allowlist, no peering. The VNet
# (peered_vnet_id) need not be peered; a NAT gateway with a static public IP on the function's
# subnet carries its internet traffic, and the allowlist names that IP (end of this file).

data "azurerm_virtual_network" "peered" {
  name                = local.peered_vnet.name
  resource_group_name = local.peered_vnet.resource_group_name
}

locals {
  vnet_address_space = data.azurerm_virtual_network.peered.address_space

  # For each CIDR below: does one of the VNet's address prefixes contain it? (see variables.tf)
  function_subnet_in_vnet = anytrue([for space in local.vnet_address_space : try(
    tonumber(split("/", var.function_subnet_cidr)[1]) >= tonumber(split("/", space)[1]) && cidrsubnet("${cidrhost(var.function_subnet_cidr, 0)}/${split("/", space)[1]}", 0, 0) == cidrsubnet(space, 0, 0),
  false)])
  endpoint_subnet_in_vnet = anytrue([for space in local.vnet_address_space : try(
    tonumber(split("/", var.private_endpoint_subnet_cidr)[1]) >= tonumber(split("/", space)[1]) && cidrsubnet("${cidrhost(var.private_endpoint_subnet_cidr, 0)}/${split("/", space)[1]}", 0, 0) == cidrsubnet(space, 0, 0),
  false)])
  peering_range_in_vnet = anytrue([for space in local.vnet_address_space : try(
    tonumber(split("/", var.peering_remote_range)[1]) >= tonumber(split("/", space)[1]) && cidrsubnet("${cidrhost(var.peering_remote_range, 0)}/${split("/", space)[1]}", 0, 0) == cidrsubnet(space, 0, 0),
  false)])
}

resource "azurerm_subnet" "function" {
  name                 = local.names.function_subnet
  resource_group_name  = data.azurerm_virtual_network.peered.resource_group_name
  virtual_network_name = data.azurerm_virtual_network.peered.name
  address_prefixes     = [var.function_subnet_cidr]

  # Regional VNet integration of an Elastic Premium app: the subnet is delegated to App Service.
  delegation {
    name = "app-service"
    service_delegation {
      name    = "Microsoft.Web/serverFarms"
      actions = ["Microsoft.Network/virtualNetworks/subnets/action"]
    }
  }

  lifecycle {
    precondition {
      condition     = local.peered_vnet.subscription_id == data.azurerm_client_config.current.subscription_id
      error_message = "peered_vnet_id is in another subscription than the one Terraform deploys to; regional VNet integration needs the function app and the VNet in one subscription."
    }
    precondition {
      condition     = lower(replace(data.azurerm_virtual_network.peered.location, " ", "")) == lower(replace(var.location, " ", ""))
      error_message = "location must be the peered VNet's region (${data.azurerm_virtual_network.peered.location}): regional VNet integration only joins a VNet in the app's own region."
    }
    precondition {
      condition     = local.public || length(data.azurerm_virtual_network.peered.vnet_peerings) > 0
      error_message = "The VNet ${local.peered_vnet.name} has no peering: create the Event Store Cloud peering with it first (docs/deploy-azure.md, step 1)."
    }
    precondition {
      condition     = local.public || local.peering_range_in_vnet
      error_message = "peering_remote_range ${var.peering_remote_range} is not inside the peered VNet's address space (${join(", ", local.vnet_address_space)}): give the range the Event Store Cloud peering was created with."
    }
    precondition {
      condition     = local.function_subnet_in_vnet
      error_message = "function_subnet_cidr ${var.function_subnet_cidr} is not inside the peered VNet's address space (${join(", ", local.vnet_address_space)})."
    }
  }
}

resource "azurerm_subnet" "endpoints" {
  name                              = local.names.endpoint_subnet
  resource_group_name               = data.azurerm_virtual_network.peered.resource_group_name
  virtual_network_name              = data.azurerm_virtual_network.peered.name
  address_prefixes                  = [var.private_endpoint_subnet_cidr]
  private_endpoint_network_policies = "NetworkSecurityGroupEnabled"

  lifecycle {
    precondition {
      condition     = local.endpoint_subnet_in_vnet
      error_message = "private_endpoint_subnet_cidr ${var.private_endpoint_subnet_cidr} is not inside the peered VNet's address space (${join(", ", local.vnet_address_space)})."
    }
  }
}

# --- network security groups ----------------------------------------------------------------

resource "azurerm_network_security_group" "function" {
  name                = "nsg-${local.names.function_subnet}"
  location            = azurerm_resource_group.relay.location
  resource_group_name = azurerm_resource_group.relay.name
  tags                = local.tags

  # The VNet service tag covers the VNet, the peered Event Store Cloud network and the
  # private endpoints.
  security_rule {
    name                       = "allow-vnet-outbound"
    priority                   = 100
    direction                  = "Outbound"
    access                     = "Allow"
    protocol                   = "*"
    source_address_prefix      = "*"
    source_port_range          = "*"
    destination_address_prefix = "VirtualNetwork"
    destination_port_range     = "*"
  }

  security_rule {
    name                       = "allow-azure-monitor-outbound"
    priority                   = 110
    direction                  = "Outbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefix      = "*"
    source_port_range          = "*"
    destination_address_prefix = "AzureMonitor"
    destination_port_range     = "443"
  }

  security_rule {
    name                       = "allow-entra-id-outbound"
    priority                   = 120
    direction                  = "Outbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefix      = "*"
    source_port_range          = "*"
    destination_address_prefix = "AzureActiveDirectory"
    destination_port_range     = "443"
  }

  # Outbound rules that depend on the inputs (local.function_conditional_rules below), in one
  # dynamic block: checkov renders one, but fails its NSG checks on two.
  dynamic "security_rule" {
    for_each = local.function_conditional_rules
    content {
      name                       = security_rule.key
      priority                   = security_rule.value.priority
      direction                  = "Outbound"
      access                     = security_rule.value.access
      protocol                   = security_rule.value.protocol
      source_address_prefix      = "*"
      source_port_range          = "*"
      destination_address_prefix = "Internet"
      destination_port_range     = security_rule.value.port
    }
  }
}

locals {
  # The public topology: the cluster's port on the internet, through the NAT gateway (a public
  # cluster's node addresses are not fixed, so the rule names the port, not them). Unless
  # allow_internet_egress: the rest of the internet denied.
  function_conditional_rules = {
    for rule in [
      { name = "allow-cluster-internet-outbound", enabled = local.public, priority = 130, access = "Allow", protocol = "Tcp", port = tostring(var.cluster_port) },
      { name = "deny-internet-outbound", enabled = !var.allow_internet_egress, priority = 4000, access = "Deny", protocol = "*", port = "*" },
    ] : rule.name => rule if rule.enabled
  }
}

resource "azurerm_subnet_network_security_group_association" "function" {
  subnet_id                 = azurerm_subnet.function.id
  network_security_group_id = azurerm_network_security_group.function.id
}

resource "azurerm_network_security_group" "endpoints" {
  name                = "nsg-${local.names.endpoint_subnet}"
  location            = azurerm_resource_group.relay.location
  resource_group_name = azurerm_resource_group.relay.name
  tags                = local.tags

  # HTTPS (blob, queue, table, vault) from the VNet's own address space: the function, and an
  # operator's machine in the VNet setting the Key Vault secrets. Data access still needs a role.
  # The peered Event Store Cloud network is not in this address space.
  security_rule {
    name                       = "allow-vnet-https-inbound"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefixes    = local.vnet_address_space
    source_port_range          = "*"
    destination_address_prefix = var.private_endpoint_subnet_cidr
    destination_port_range     = "443"
  }

  # SMB to the app's content share (Azure Files) from the function's subnet only.
  security_rule {
    name                       = "allow-function-smb-inbound"
    priority                   = 110
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefix      = var.function_subnet_cidr
    source_port_range          = "*"
    destination_address_prefix = var.private_endpoint_subnet_cidr
    destination_port_range     = "445"
  }

  security_rule {
    name                       = "deny-other-inbound"
    priority                   = 4000
    direction                  = "Inbound"
    access                     = "Deny"
    protocol                   = "*"
    source_address_prefix      = "*"
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "*"
  }
}

resource "azurerm_subnet_network_security_group_association" "endpoints" {
  subnet_id                 = azurerm_subnet.endpoints.id
  network_security_group_id = azurerm_network_security_group.endpoints.id
}

# --- private endpoints and their DNS ----------------------------------------------------------

locals {
  private_endpoints = {
    blob  = { resource_id = azurerm_storage_account.relay.id, subresource = "blob", zone = "privatelink.blob.core.windows.net" }
    queue = { resource_id = azurerm_storage_account.relay.id, subresource = "queue", zone = "privatelink.queue.core.windows.net" }
    table = { resource_id = azurerm_storage_account.relay.id, subresource = "table", zone = "privatelink.table.core.windows.net" }
    file  = { resource_id = azurerm_storage_account.relay.id, subresource = "file", zone = "privatelink.file.core.windows.net" }
    vault = { resource_id = azurerm_key_vault.relay.id, subresource = "vault", zone = "privatelink.vaultcore.azure.net" }
  }
  # Zones created here (and linked to the peered VNet) unless the operator brings their own.
  created_zones = { for k, pe in local.private_endpoints : k => pe.zone if !contains(keys(var.private_dns_zone_ids), k) }
  zone_ids      = merge({ for k, zone in azurerm_private_dns_zone.relay : k => zone.id }, var.private_dns_zone_ids)
}

resource "azurerm_private_dns_zone" "relay" {
  for_each            = local.created_zones
  name                = each.value
  resource_group_name = azurerm_resource_group.relay.name
  tags                = local.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "relay" {
  for_each             = local.created_zones
  name                 = "${var.name}-${each.key}"
  private_dns_zone_id  = azurerm_private_dns_zone.relay[each.key].id
  virtual_network_id   = data.azurerm_virtual_network.peered.id
  registration_enabled = false
  tags                 = local.tags
}

resource "azurerm_private_endpoint" "relay" {
  for_each                      = local.private_endpoints
  name                          = "pe-${var.name}-${each.key}"
  location                      = azurerm_resource_group.relay.location
  resource_group_name           = azurerm_resource_group.relay.name
  subnet_id                     = azurerm_subnet.endpoints.id
  custom_network_interface_name = "nic-pe-${var.name}-${each.key}"
  tags                          = local.tags

  private_service_connection {
    name                           = "${var.name}-${each.key}"
    private_connection_resource_id = each.value.resource_id
    subresource_names              = [each.value.subresource]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = "default"
    private_dns_zone_ids = [local.zone_ids[each.key]]
  }
}

# --- the public topology: a NAT gateway with a static public IP ------------------------------

resource "azurerm_public_ip" "egress" {
  count               = local.public ? 1 : 0
  name                = "pip-${var.name}-egress"
  location            = azurerm_resource_group.relay.location
  resource_group_name = azurerm_resource_group.relay.name
  allocation_method   = "Static"
  sku                 = "Standard"
  tags                = local.tags
}

resource "azurerm_nat_gateway" "egress" {
  count               = local.public ? 1 : 0
  name                = "ng-${var.name}"
  location            = azurerm_resource_group.relay.location
  resource_group_name = azurerm_resource_group.relay.name
  sku_name            = "Standard"
  # Minutes an idle TCP connection keeps its translation (4 by default); a slice's gRPC
  # connections stay busy, and the next slice opens new ones.
  idle_timeout_in_minutes = 10
  tags                    = local.tags
}

resource "azurerm_nat_gateway_public_ip_association" "egress" {
  count                = local.public ? 1 : 0
  nat_gateway_id       = azurerm_nat_gateway.egress[0].id
  public_ip_address_id = azurerm_public_ip.egress[0].id
}

# With vnet_route_all_enabled, all of the app's outbound traffic enters this subnet; what goes
# to the internet (the cluster) leaves through the NAT gateway's static address. Storage and
# Key Vault stay on their private endpoints.
resource "azurerm_subnet_nat_gateway_association" "function" {
  count          = local.public ? 1 : 0
  subnet_id      = azurerm_subnet.function.id
  nat_gateway_id = azurerm_nat_gateway.egress[0].id
}

terraform {
  # 1.9: a variable's validation may refer to other variables (the subnet-in-peering-range check).
  required_version = ">= 1.9.0"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # The resource schemas used here were read from azurerm v5.2.0 (storage child resources by
      # storage_account_id over Resource Manager, DNS zone links by private_dns_zone_id, Key Vault
      # rbac_authorization_enabled): patch releases only.
      version = "~> 5.2.0"
    }
  }
}

provider "azurerm" {
  features {
    key_vault {
      # Purge protection is on: a destroyed vault stays soft-deleted for its retention period.
      purge_soft_delete_on_destroy = false
    }
    resource_group {
      prevent_deletion_if_contains_resources = true
    }
    storage {
      # The storage account has no public endpoint: everything here goes through Resource
      # Manager, and the provider must not try the account's data plane from outside the VNet.
      data_plane_available = false
    }
  }
  storage_use_azuread = true
}

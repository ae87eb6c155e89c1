# Inputs of the esdb-relay Azure deployment. Every value a user can get wrong is validated here,
# so `terraform plan` refuses it before anything is created. Terraform has no "CIDR contains"
# function: a range A lies inside a range B when A's prefix is at least as long as B's and A's
# first address, cut to B's prefix length, is B's network address:
#   cidrsubnet("${cidrhost(A, 0)}/${B's prefix}", 0, 0) == cidrsubnet(B, 0, 0)
# (cidrsubnet/cidrhost normalise the host bits away). Checks that need the peered VNet's real
# address space are preconditions on the subnets (network.tf), evaluated during plan.

variable "location" {
  description = "Azure region of the relay; it must be the peered VNet's region (regional VNet integration)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9 ]{1,40}$", var.location))
    error_message = "location must be an Azure region name such as westeurope or \"West Europe\"."
  }
}

variable "resource_group_name" {
  description = "Resource group created for the relay's resources (the peered VNet keeps its own)."
  type        = string
  default     = "rg-esdb-relay"

  validation {
    condition     = can(regex("^[-\\w.()]{1,89}[-\\w()]$", var.resource_group_name))
    error_message = "resource_group_name must be 1-90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'."
  }
}

variable "name" {
  description = "Short name prefixed to every resource (lowercase letters, digits, single hyphens)."
  type        = string
  default     = "esdb-relay"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]*(-[a-z0-9]+)*$", var.name)) && length(var.name) >= 3 && length(var.name) <= 13
    error_message = "name must be 3-13 lowercase letters and digits with single hyphens, starting with a letter (storage account and Key Vault names are derived from it)."
  }
}

# --- the network ----------------------------------------------------------------------------

variable "network_mode" {
  description = "How the function reaches the cloud cluster. \"peered\": through peered_vnet_id's peering with Event Store Cloud (give peering_remote_range). \"public\": a public cluster with an IP allowlist, through a NAT gateway with a static public IP (output egress_ip) that you add to the allowlist; no peering."
  type        = string
  default     = "peered"

  validation {
    condition     = contains(["peered", "public"], var.network_mode)
    error_message = "network_mode must be \"peered\" (VNet peering with Event Store Cloud) or \"public\" (a public cluster with an IP allowlist, through a NAT gateway)."
  }
}

variable "cluster_port" {
  description = "network_mode \"public\": the cloud cluster's gRPC port, which the function's NSG lets out to the internet (through the NAT gateway)."
  type        = number
  default     = 2113

  validation {
    condition     = var.cluster_port >= 1 && var.cluster_port <= 65535 && floor(var.cluster_port) == var.cluster_port
    error_message = "cluster_port must be a TCP port, 1-65535."
  }
}

variable "peered_vnet_id" {
  description = "Resource ID of the VNet the function joins. network_mode \"peered\": the VNet directly peered with Event Store Cloud (Azure peering links have gateway transit disabled, so the function must sit in this VNet, not in a VNet peered to it). \"public\": any VNet in the region."
  type        = string

  validation {
    condition     = can(regex("^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/]+/providers/Microsoft\\.Network/virtualNetworks/[^/]+$", var.peered_vnet_id))
    error_message = "peered_vnet_id must be a VNet resource ID: /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Network/virtualNetworks/<name>."
  }
}

variable "peering_remote_range" {
  description = "network_mode \"peered\": the single IP range of your VNet given to the Event Store Cloud peering (the peering's \"Remote Address\" in the Cloud console). Only addresses in it can reach the cluster. Unset (null) with network_mode \"public\"."
  type        = string
  default     = null

  validation {
    condition     = var.network_mode == "public" ? var.peering_remote_range == null : try(can(regex("^\\d+\\.\\d+\\.\\d+\\.\\d+/\\d+$", var.peering_remote_range)) && cidrsubnet(var.peering_remote_range, 0, 0) == var.peering_remote_range, false)
    error_message = "peering_remote_range must be an IPv4 CIDR with no host bits set, e.g. 10.20.0.0/16, with network_mode \"peered\", and unset with network_mode \"public\" (no peering)."
  }
}

variable "function_subnet_cidr" {
  description = "CIDR of the new subnet the function app is integrated into; it must lie inside the VNet's address space (and, with network_mode \"peered\", inside peering_remote_range), and must be free."
  type        = string

  validation {
    condition     = try(can(regex("^\\d+\\.\\d+\\.\\d+\\.\\d+/\\d+$", var.function_subnet_cidr)) && cidrsubnet(var.function_subnet_cidr, 0, 0) == var.function_subnet_cidr && tonumber(split("/", var.function_subnet_cidr)[1]) >= 16 && tonumber(split("/", var.function_subnet_cidr)[1]) <= 28, false)
    error_message = "function_subnet_cidr must be an IPv4 CIDR from /16 to /28 with no host bits set (regional VNet integration needs at least a /28; a /26 leaves room to scale out), e.g. 10.20.8.0/26."
  }

  validation {
    # A inside B: A's prefix is at least B's, and A's first address cut to B's prefix is B.
    # Not with network_mode "public": there is no peering range then.
    condition     = var.network_mode == "public" || try(tonumber(split("/", var.function_subnet_cidr)[1]) >= tonumber(split("/", var.peering_remote_range)[1]) && cidrsubnet("${cidrhost(var.function_subnet_cidr, 0)}/${split("/", var.peering_remote_range)[1]}", 0, 0) == cidrsubnet(var.peering_remote_range, 0, 0), false)
    error_message = "function_subnet_cidr must lie inside peering_remote_range: an Event Store Cloud peering link carries one IP range, and the function's traffic comes from this subnet. Pick a free block inside the peering range."
  }
}

variable "private_endpoint_subnet_cidr" {
  description = "CIDR of the new subnet for the storage and Key Vault private endpoints (in the peered VNet; it need not be in the peering range)."
  type        = string

  validation {
    condition     = try(can(regex("^\\d+\\.\\d+\\.\\d+\\.\\d+/\\d+$", var.private_endpoint_subnet_cidr)) && cidrsubnet(var.private_endpoint_subnet_cidr, 0, 0) == var.private_endpoint_subnet_cidr && tonumber(split("/", var.private_endpoint_subnet_cidr)[1]) >= 16 && tonumber(split("/", var.private_endpoint_subnet_cidr)[1]) <= 28, false)
    error_message = "private_endpoint_subnet_cidr must be an IPv4 CIDR from /16 to /28 with no host bits set (five private endpoints plus Azure's five reserved addresses), e.g. 10.20.9.0/28."
  }

  validation {
    # Two CIDR blocks overlap exactly when one contains the other.
    condition = try(!(
      (tonumber(split("/", var.private_endpoint_subnet_cidr)[1]) >= tonumber(split("/", var.function_subnet_cidr)[1]) && cidrsubnet("${cidrhost(var.private_endpoint_subnet_cidr, 0)}/${split("/", var.function_subnet_cidr)[1]}", 0, 0) == cidrsubnet(var.function_subnet_cidr, 0, 0))
      || (tonumber(split("/", var.function_subnet_cidr)[1]) >= tonumber(split("/", var.private_endpoint_subnet_cidr)[1]) && cidrsubnet("${cidrhost(var.function_subnet_cidr, 0)}/${split("/", var.private_endpoint_subnet_cidr)[1]}", 0, 0) == cidrsubnet(var.private_endpoint_subnet_cidr, 0, 0))
    ), false)
    error_message = "private_endpoint_subnet_cidr must not overlap function_subnet_cidr: the function's integration subnet is delegated to App Service and cannot hold private endpoints."
  }
}

variable "private_dns_zone_ids" {
  description = "Existing private DNS zones to use instead of creating and linking new ones (for a hub-and-spoke DNS setup), by service: blob, queue, table, file, vault. A VNet can link only one zone of a given name."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.private_dns_zone_ids) : contains(["blob", "queue", "table", "file", "vault"], k)])
    error_message = "private_dns_zone_ids keys must be among blob, queue, table, file, vault."
  }

  validation {
    condition     = alltrue([for v in values(var.private_dns_zone_ids) : can(regex("^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\\.Network/privateDnsZones/privatelink\\.[a-z.]+$", v))])
    error_message = "private_dns_zone_ids values must be private DNS zone resource IDs (…/providers/Microsoft.Network/privateDnsZones/privatelink.…)."
  }
}

variable "allow_internet_egress" {
  description = "Let the function subnet reach the internet. Off: outbound is limited to the VNet (Event Store Cloud through the peering, the private endpoints), Azure Monitor and Microsoft Entra ID."
  type        = bool
  default     = false
}

variable "operator_ip_ranges" {
  description = "Public IPv4 ranges allowed to reach the function app's HTTPS endpoint (manual invoke with a function key) and its deployment (SCM) endpoint. Empty: nobody from outside; timers and queues still run."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for r in var.operator_ip_ranges : try(can(regex("^\\d+\\.\\d+\\.\\d+\\.\\d+/\\d+$", r)) && cidrsubnet(r, 0, 0) == r && tonumber(split("/", r)[1]) >= 8, false)])
    error_message = "operator_ip_ranges must be IPv4 CIDRs with no host bits set and a prefix of /8 or longer (e.g. 203.0.113.7/32), never 0.0.0.0/0."
  }
}

variable "secrets_officer_principal_ids" {
  description = "Object IDs of the people or pipelines that set the Key Vault secrets (granted Key Vault Secrets Officer on this vault only)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.secrets_officer_principal_ids : can(regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", id))])
    error_message = "secrets_officer_principal_ids must be Microsoft Entra object IDs (UUIDs)."
  }
}

# --- the relay job -------------------------------------------------------------------------

variable "job_id" {
  description = "The relay job this function runs (ESDB_RELAY_JOB_ID): its checkpoint's key."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", var.job_id))
    error_message = "job_id must be 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit (e.g. orders-migration)."
  }
}

variable "schedule" {
  description = "NCRONTAB schedule of the timer trigger: {second} {minute} {hour} {day} {month} {day-of-week}, UTC."
  type        = string
  default     = "0 */5 * * * *"

  validation {
    condition     = can(regex("^[0-9A-Za-z*/,-]+( [0-9A-Za-z*/,-]+){5}$", var.schedule))
    error_message = "schedule must be an NCRONTAB expression of six space-separated fields, {second} {minute} {hour} {day} {month} {day-of-week}, e.g. \"0 */5 * * * *\" (every five minutes)."
  }

  validation {
    condition     = can(regex("^([0-9]|[1-5][0-9]) ", var.schedule))
    error_message = "schedule's first (seconds) field must be one number from 0 to 59: a timer firing every second only piles up invocations waiting for the job's lease."
  }
}

variable "schedule_seconds" {
  description = "The schedule's period in seconds (ESDB_RELAY_SCHEDULE_SECONDS): status calls a caught-up job idle when no slice ran for longer than this plus a minute. Keep it equal to the schedule's interval."
  type        = number
  default     = 300

  validation {
    condition     = var.schedule_seconds >= 60 && floor(var.schedule_seconds) == var.schedule_seconds
    error_message = "schedule_seconds must be a whole number of seconds, at least 60: the period of the schedule."
  }
}

variable "slice_max_events" {
  description = "Events one slice reads at most (ESDB_RELAY_BUDGET__MAX_EVENTS); a slice also stops at the function timeout."
  type        = number
  default     = 20000

  validation {
    condition     = var.slice_max_events >= 1 && var.slice_max_events <= 1000000 && floor(var.slice_max_events) == var.slice_max_events
    error_message = "slice_max_events must be a whole number from 1 to 1000000."
  }
}

variable "mode" {
  description = "ordered (one writer, the source's global order) or partitioned (writers by stream, order kept per stream)."
  type        = string
  default     = "ordered"

  validation {
    condition     = contains(["ordered", "partitioned"], var.mode)
    error_message = "mode must be \"ordered\" or \"partitioned\"."
  }
}

variable "partitions" {
  description = "Concurrent writers in partitioned mode (1 in ordered mode)."
  type        = number
  default     = 1

  validation {
    condition     = var.partitions >= 1 && var.partitions <= 256 && floor(var.partitions) == var.partitions
    error_message = "partitions must be a whole number from 1 to 256."
  }

  validation {
    condition     = var.partitions == 1 || var.mode == "partitioned"
    error_message = "more than one partition needs mode = \"partitioned\"; ordered mode keeps the global order with one writer."
  }
}

variable "shards" {
  description = "Chains of slices the job is split into (ESDB_RELAY_SHARDS, 1-64): each shard copies the streams its server-side filter passes with its own lease and checkpoint, so K shards copy in parallel. Order is kept per stream; global order is NOT kept across shards. Fixed for the job's life once its first shard started (a new job_id to change it)."
  type        = number
  default     = 1

  validation {
    condition     = var.shards >= 1 && var.shards <= 64 && floor(var.shards) == var.shards
    error_message = "shards must be a whole number from 1 to 64."
  }
}

variable "function_timeout_seconds" {
  description = "The host's functionTimeout and ESDB_RELAY_FUNCTION_TIMEOUT: a slice stops in time to commit, and its lease ends when the host would stop the function (counted from the worker's start on a cold start)."
  type        = number
  default     = 600

  validation {
    condition     = var.function_timeout_seconds >= 60 && var.function_timeout_seconds <= 3600 && floor(var.function_timeout_seconds) == var.function_timeout_seconds
    error_message = "function_timeout_seconds must be a whole number from 60 to 3600."
  }
}

variable "job_settings" {
  description = "More ESDB_RELAY_* job settings (core/config.py), e.g. { ESDB_RELAY_FILTERS__EXCLUDE_STREAMS = \"[\\\"^tmp-\\\"]\" }. Never connection strings: those live in Key Vault."
  type        = map(string)
  default     = {}
  # Terraform echoes an offending value in validation errors: never a secret pasted here by mistake.
  sensitive = true

  validation {
    condition     = alltrue([for k in keys(var.job_settings) : can(regex("^ESDB_RELAY_[A-Z0-9_]+$", k))])
    error_message = "job_settings keys must be ESDB_RELAY_* job settings in upper case, e.g. ESDB_RELAY_BATCH__MAX_EVENTS."
  }

  validation {
    condition = alltrue([for k in keys(var.job_settings) : !contains([
      "ESDB_RELAY_JOB_ID", "ESDB_RELAY_SOURCE", "ESDB_RELAY_TARGET", "ESDB_RELAY_CHECKPOINT_STORE",
      "ESDB_RELAY_QUEUE", "ESDB_RELAY_CHAIN_QUEUE", "ESDB_RELAY_SCHEDULE", "ESDB_RELAY_FUNCTION_TIMEOUT",
      "ESDB_RELAY_MODE", "ESDB_RELAY_PARTITIONS", "ESDB_RELAY_BUDGET__MAX_EVENTS", "ESDB_RELAY_LEASE_TTL_SECONDS",
      "ESDB_RELAY_SCHEDULE_SECONDS", "ESDB_RELAY_SHARDS",
    ], k) && !startswith(k, "ESDB_RELAY_QUEUE__") && !startswith(k, "ESDB_RELAY_PREFLIGHT__")])
    error_message = "job_settings must not set what the template wires itself (job id, connection strings, checkpoint store, queue, schedule, timeout, mode, partitions, shards, slice size, lease, the preflight's network settings): use the variables."
  }

  validation {
    condition     = alltrue([for v in values(var.job_settings) : !can(regex("://[^/\\s]*@", v))])
    error_message = "job_settings must not hold credentials (a URL with user@): put connection strings in the Key Vault secrets."
  }
}

# --- the function app ----------------------------------------------------------------------

variable "python_version" {
  description = "Python of the function runtime; the same as `esdb-relay package azure --python-version`."
  type        = string
  default     = "3.11"

  validation {
    condition     = contains(["3.11", "3.12"], var.python_version)
    error_message = "python_version must be 3.11 or 3.12 (the package's wheels are built for one of them)."
  }
}

variable "maximum_instances" {
  description = "Elastic Premium burst limit. The job's lease lets one slice run at a time, so more instances only absorb overlapping triggers."
  type        = number
  default     = 3

  validation {
    condition     = var.maximum_instances >= 1 && var.maximum_instances <= 20 && floor(var.maximum_instances) == var.maximum_instances
    error_message = "maximum_instances must be a whole number from 1 to 20."
  }
}

variable "storage_replication_type" {
  description = "Replication of the storage account holding checkpoints, the chain queue and the app's content."
  type        = string
  default     = "GRS"

  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "RAGRS", "GZRS", "RAGZRS"], var.storage_replication_type)
    error_message = "storage_replication_type must be one of LRS, ZRS, GRS, RAGRS, GZRS, RAGZRS."
  }
}

variable "package_path" {
  description = "Optional: the zip built by `esdb-relay package azure`. When set, apply deploys it with `az functionapp deployment source config-zip` (needs the az CLI logged in, an operator_ip_ranges entry for this machine, and the Key Vault secrets set)."
  type        = string
  default     = null

  validation {
    condition     = var.package_path == null ? true : try(endswith(var.package_path, ".zip") && fileexists(var.package_path), false)
    error_message = "package_path must name an existing .zip built by `esdb-relay package azure`."
  }
}

variable "tags" {
  description = "Tags for every resource created."
  type        = map(string)
  default     = {}
}

# --- alerting (monitoring.tf) ------------------------------------------------------------

variable "alert_action_group_ids" {
  description = "Azure Monitor action groups the alerts notify (resource IDs). Empty: alerts only fire in Azure Monitor."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.alert_action_group_ids : can(regex("^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/(?i:microsoft\\.insights)/actionGroups/[^/]+$", id))])
    error_message = "alert_action_group_ids must be action group resource IDs: /subscriptions/<id>/resourceGroups/<group>/providers/microsoft.insights/actionGroups/<name>."
  }
}

variable "lag_alert_bytes" {
  description = "The lag alert fires when slices report more source log bytes than this still to copy for lag_alert_hours."
  type        = number
  default     = 1073741824

  validation {
    condition     = var.lag_alert_bytes >= 0
    error_message = "lag_alert_bytes must be 0 or more."
  }
}

variable "lag_alert_hours" {
  description = "Hours of lag above lag_alert_bytes before the lag alert fires."
  type        = number
  default     = 6

  validation {
    condition     = var.lag_alert_hours >= 1 && var.lag_alert_hours <= 24 && floor(var.lag_alert_hours) == var.lag_alert_hours
    error_message = "lag_alert_hours must be a whole number from 1 to 24."
  }
}

variable "no_slice_alert_minutes" {
  description = "Minutes without any slice before the no-slice alert fires (at least a few timer periods)."
  type        = number
  default     = 60

  validation {
    condition     = var.no_slice_alert_minutes >= 15 && var.no_slice_alert_minutes <= 1440 && floor(var.no_slice_alert_minutes) == var.no_slice_alert_minutes
    error_message = "no_slice_alert_minutes must be a whole number from 15 to 1440."
  }
}

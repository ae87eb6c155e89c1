# Inputs. Every check Terraform can make before touching Google Cloud is a validation block here,
# so a wrong value fails `terraform plan` with the fix, not a half-applied deployment.

# --- where ---------------------------------------------------------------------------------

variable "project" {
  description = "Google Cloud project ID that holds the peered VPC and everything created here."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project))
    error_message = "project must be a project ID (6-30 lowercase letters, digits, hyphens, starting with a letter), e.g. my-migration-project."
  }
}

variable "region" {
  description = "Region of the functions, the connector, the subnet, the scheduler job and the secrets' replicas: the region of the VPC subnet peered with Event Store Cloud."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region, e.g. europe-west1 or us-central1."
  }
}

variable "name" {
  description = "Prefix of every resource name (functions, topic, connector, service accounts, secrets, bucket). One deployment per job: give each job its own name."
  type        = string
  default     = "esdb-relay"

  validation {
    # The connector name ("<name>-vpc") is limited to 25 characters and a service account id
    # ("<name>-fn") needs at least 6.
    condition     = can(regex("^[a-z][a-z0-9-]{1,16}[a-z0-9]$", var.name))
    error_message = "name must be 3-18 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen (e.g. orders-relay)."
  }
}

# --- the network ----------------------------------------------------------------------------

variable "network_mode" {
  description = "How the functions reach the cloud cluster. \"peered\": through this VPC's peering with Event Store Cloud (give peering_cidr). \"public\": a public cluster with an IP allowlist, through Cloud NAT with a reserved static address (output egress_ip) that you add to the allowlist; no peering."
  type        = string
  default     = "peered"

  validation {
    condition     = contains(["peered", "public"], var.network_mode)
    error_message = "network_mode must be \"peered\" (VPC peering with Event Store Cloud) or \"public\" (a public cluster with an IP allowlist, through Cloud NAT)."
  }
}

variable "network" {
  description = "Name of the VPC network of the connector: peered with the Event Store Cloud network (the network of the peering's 'remote address' range) when network_mode is \"peered\"."
  type        = string

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", var.network))
    error_message = "network must be the VPC network's name (not its self link), e.g. vpc-esc."
  }
}

variable "peering_cidr" {
  description = "network_mode \"peered\": the single IP range given as the Event Store Cloud peering's remote address (the range of this VPC that the peering routes to the cluster), e.g. 10.10.0.0/16. Event Store Cloud accepts one range per peering, so everything that talks to the cluster must sit inside it. Null (unset) when network_mode is \"public\"."
  type        = string
  default     = null

  validation {
    condition     = var.network_mode == "public" ? var.peering_cidr == null : can(cidrnetmask(var.peering_cidr))
    error_message = "peering_cidr must be an IPv4 CIDR block (e.g. 10.10.0.0/16) with network_mode \"peered\", and unset with network_mode \"public\" (no peering)."
  }

  validation {
    condition     = var.peering_cidr == null || try(cidrhost(var.peering_cidr, 0) == split("/", var.peering_cidr)[0], false)
    error_message = "peering_cidr must be written with its network address, as in the Event Store Cloud console (e.g. 10.10.0.0/16, not 10.10.3.7/16)."
  }
}

variable "connector_cidr" {
  description = "The /28 range of the subnet created for the Serverless VPC Access connector. The functions' traffic to the cluster leaves from these addresses, so with network_mode \"peered\" it must lie inside peering_cidr (e.g. the last /28 of the peered range: 10.10.255.240/28); it must not overlap any existing subnet of the network."
  type        = string

  validation {
    condition     = can(cidrnetmask(var.connector_cidr)) && try(split("/", var.connector_cidr)[1] == "28", false)
    error_message = "connector_cidr must be an IPv4 /28 block (Serverless VPC Access connectors use exactly 16 addresses), e.g. 10.10.255.240/28."
  }

  validation {
    condition     = try(cidrhost(var.connector_cidr, 0) == split("/", var.connector_cidr)[0], false)
    error_message = "connector_cidr must be written with its network address (a multiple of 16 in the last octet), e.g. 10.10.255.240/28."
  }

  validation {
    # Containment, in Terraform's own CIDR functions: the connector range is inside the peering
    # range when it is no larger (its prefix is at least as long) and its address, cut to the
    # peering prefix length, is the peering network address. Event Store Cloud peers one range
    # only; a connector outside it is unreachable from the cluster (the GKE pod-range pitfall).
    # Not with network_mode "public": there is no peering range then.
    condition = var.network_mode == "public" || try(
      tonumber(split("/", var.connector_cidr)[1]) >= tonumber(split("/", var.peering_cidr)[1]) &&
      cidrhost("${split("/", var.connector_cidr)[0]}/${split("/", var.peering_cidr)[1]}", 0) == cidrhost(var.peering_cidr, 0),
      false
    )
    error_message = "connector_cidr must lie inside peering_cidr: Event Store Cloud routes only the one range given as the peering's remote address. Pick a free /28 inside peering_cidr, or recreate the peering with a larger range that covers both your subnets and the connector (docs/deploy-gcp.md, step 2)."
  }
}

variable "esc_cidr" {
  description = "Optional: the Event Store Cloud network's CIDR block (the peering's local address). When given, it is checked not to overlap peering_cidr."
  type        = string
  default     = null

  validation {
    condition = var.esc_cidr == null ? true : var.network_mode == "peered" && try(
      cidrhost(var.esc_cidr, 0) == split("/", var.esc_cidr)[0] &&
      # Two blocks overlap when one contains the other: compare both at the shorter prefix.
      cidrhost("${split("/", var.esc_cidr)[0]}/${min(tonumber(split("/", var.esc_cidr)[1]), tonumber(split("/", var.peering_cidr)[1]))}", 0) !=
      cidrhost("${split("/", var.peering_cidr)[0]}/${min(tonumber(split("/", var.esc_cidr)[1]), tonumber(split("/", var.peering_cidr)[1]))}", 0),
      false
    )
    error_message = "esc_cidr must be an IPv4 CIDR block written with its network address that does not overlap peering_cidr (peered networks cannot share addresses), and unset with network_mode \"public\"."
  }
}

# --- the job -------------------------------------------------------------------------------

variable "job_id" {
  description = "The relay job this deployment runs (ESDB_RELAY_JOB_ID): the key of its checkpoint."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", var.job_id))
    error_message = "job_id must be 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit (e.g. orders-migration)."
  }
}

variable "schedule" {
  description = "Cloud Scheduler cron (unix-cron, five fields) of the scheduled slice. Each tick runs one slice; a slice that did not reach the source's tail chains the next one at once, so the schedule only matters once the backfill has caught up."
  type        = string
  default     = "*/5 * * * *"

  validation {
    condition     = can(regex("^[0-9A-Za-z*/,-]+( [0-9A-Za-z*/,-]+){4}$", var.schedule))
    error_message = "schedule must be a five-field unix-cron expression separated by single spaces (minute hour day-of-month month day-of-week), e.g. \"*/5 * * * *\"."
  }
}

variable "time_zone" {
  description = "Time zone of the schedule (tz database name)."
  type        = string
  default     = "Etc/UTC"

  validation {
    condition     = can(regex("^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", var.time_zone))
    error_message = "time_zone must be a tz database name, e.g. Etc/UTC or Europe/Berlin."
  }
}

variable "paused" {
  description = "Create the scheduler job paused (no scheduled slices; manual invokes still work)."
  type        = bool
  default     = false
}

variable "mode" {
  description = "ordered (one writer, the global $all order is kept) or partitioned (streams hashed to `partitions` concurrent writers; order kept per stream)."
  type        = string
  default     = "ordered"

  validation {
    condition     = contains(["ordered", "partitioned"], var.mode)
    error_message = "mode must be \"ordered\" or \"partitioned\"."
  }
}

variable "partitions" {
  description = "Concurrent writers in partitioned mode (1-256); 1 in ordered mode."
  type        = number
  default     = 1

  validation {
    condition     = var.partitions >= 1 && var.partitions <= 256 && floor(var.partitions) == var.partitions
    error_message = "partitions must be a whole number from 1 to 256."
  }

  validation {
    condition     = var.partitions == 1 || var.mode == "partitioned"
    error_message = "more than one partition needs mode = \"partitioned\" (ordered mode keeps the global order with one writer)."
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
  description = "Events read per slice at most (ESDB_RELAY_BUDGET__MAX_EVENTS). A slice also stops at the function's time-out minus a safety margin, whichever comes first."
  type        = number
  default     = 20000

  validation {
    condition     = var.slice_max_events >= 1 && var.slice_max_events <= 10000000 && floor(var.slice_max_events) == var.slice_max_events
    error_message = "slice_max_events must be a whole number from 1 to 10,000,000."
  }
}

variable "job_settings" {
  description = "Further job settings as ESDB_RELAY_* environment variables (core/config.py), e.g. { ESDB_RELAY_FILTERS__INCLUDE_STREAMS = jsonencode([\"^order-\"]) }. Not for connection strings: those come from Secret Manager."
  type        = map(string)
  default     = {}
  # Terraform echoes an offending value in validation errors: never a secret pasted here by mistake.
  sensitive = true

  validation {
    condition     = alltrue([for k in keys(var.job_settings) : can(regex("^ESDB_RELAY_[A-Z0-9_]+$", k))])
    error_message = "job_settings keys must be ESDB_RELAY_* environment variable names in capitals, e.g. ESDB_RELAY_BATCH__MAX_EVENTS."
  }

  validation {
    condition = length(setintersection(keys(var.job_settings), [
      "ESDB_RELAY_SOURCE", "ESDB_RELAY_TARGET", "ESDB_RELAY_JOB_ID", "ESDB_RELAY_MODE",
      "ESDB_RELAY_PARTITIONS", "ESDB_RELAY_SHARDS", "ESDB_RELAY_BUDGET__MAX_EVENTS", "ESDB_RELAY_CHECKPOINT_STORE",
      "ESDB_RELAY_SCHEDULE_SECONDS",
      "ESDB_RELAY_CHAIN_TOPIC", "ESDB_RELAY_FUNCTION_TIMEOUT", "ESDB_RELAY_PREFLIGHT__SUBNETS",
      "ESDB_RELAY_PREFLIGHT__PEERING_CIDR", "ESDB_RELAY_PREFLIGHT__CLOUD",
      "ESDB_RELAY_PREFLIGHT__NETWORK_MODE", "ESDB_RELAY_PREFLIGHT__EGRESS_IPS",
    ])) == 0
    error_message = "job_settings must not set ESDB_RELAY_SOURCE or ESDB_RELAY_TARGET (connection strings live in Secret Manager only) nor a setting this module sets from its own variables (job_id, mode, partitions, shards, slice_max_events, schedule_seconds, the checkpoint store, the chain topic, the time-out, the preflight's network settings)."
  }

  validation {
    condition     = alltrue([for v in values(var.job_settings) : !can(regex("(?i)(esdb|kurrentdb)(\\+discover)?://", v))])
    error_message = "job_settings values must not hold EventStoreDB connection strings: they would be stored in plain text in the function's configuration and in Terraform state. Add them as secret versions (docs/deploy-gcp.md, step 5)."
  }
}

# --- the functions -------------------------------------------------------------------------

variable "source_zip" {
  description = "Path of the deployable zip built by `esdb-relay package gcp` (core/, handlers/gcp/, main.py, requirements.txt)."
  type        = string

  validation {
    condition     = endswith(var.source_zip, ".zip")
    error_message = "source_zip must be the path of the .zip built by `esdb-relay package gcp`."
  }

  validation {
    condition     = fileexists(var.source_zip)
    error_message = "source_zip does not exist: build it first with `esdb-relay package gcp` and pass its path."
  }
}

variable "runtime" {
  description = "Cloud Functions Python runtime (Python >= 3.11)."
  type        = string
  default     = "python311"

  validation {
    condition     = contains(["python311", "python312", "python313"], var.runtime)
    error_message = "runtime must be python311, python312 or python313 (esdb-relay needs Python >= 3.11)."
  }
}

variable "timeout_seconds" {
  description = "Function time-out in seconds (also ESDB_RELAY_FUNCTION_TIMEOUT): a slice stops in time to commit, and its lease ends when the function would be stopped (counted from the instance's start on a cold start). 540 is the limit for event-driven functions."
  type        = number
  default     = 540

  validation {
    condition     = var.timeout_seconds >= 60 && var.timeout_seconds <= 540 && floor(var.timeout_seconds) == var.timeout_seconds
    error_message = "timeout_seconds must be a whole number from 60 to 540 (the limit of Pub/Sub-triggered functions)."
  }
}

variable "memory" {
  description = "Memory of a function instance."
  type        = string
  default     = "1Gi"

  validation {
    condition     = contains(["512Mi", "1Gi", "2Gi", "4Gi", "8Gi"], var.memory)
    error_message = "memory must be one of 512Mi, 1Gi, 2Gi, 4Gi, 8Gi."
  }
}

variable "cpu" {
  description = "vCPUs of a function instance (partitioned mode writes from several threads)."
  type        = string
  default     = "1"

  validation {
    condition     = contains(["1", "2", "4"], var.cpu)
    error_message = "cpu must be \"1\", \"2\" or \"4\"."
  }

  validation {
    # Cloud Run's pairing rules: more than 4 GiB needs 2 vCPUs or more; 4 vCPUs need 2 GiB or more.
    condition     = !(var.memory == "8Gi" && var.cpu == "1") && !(var.cpu == "4" && contains(["512Mi", "1Gi"], var.memory))
    error_message = "cpu and memory do not pair: 8Gi needs cpu \"2\" or \"4\", and cpu \"4\" needs at least 2Gi."
  }
}

variable "operators" {
  description = "Principals allowed to invoke the manual HTTP function and to publish slice requests to the job's topic, e.g. [\"group:migration-team@example.com\"]. Never public."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.operators : can(regex("^(user|group|serviceAccount):[^@\\s]+@[^@\\s]+$", m))])
    error_message = "operators must be IAM members of the form user:EMAIL, group:EMAIL or serviceAccount:EMAIL; allUsers, allAuthenticatedUsers and domain-wide members are refused (the functions are never public)."
  }
}

# --- the checkpoint store and secrets -----------------------------------------------------

variable "firestore_location" {
  description = "Location of the Firestore database (a region such as europe-west1, or a multi-region such as eur3/nam5). Defaults to region."
  type        = string
  default     = null

  validation {
    condition     = var.firestore_location == null ? true : can(regex("^([a-z]+-[a-z]+[0-9]+|eur3|nam5|nam7)$", var.firestore_location))
    error_message = "firestore_location must be a region (e.g. europe-west1) or eur3, nam5, nam7."
  }
}

variable "checkpoint_collection" {
  description = "Firestore collection of the checkpoint documents (the store URL firestore://COLLECTION)."
  type        = string
  default     = "esdb-relay-checkpoints"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+$", var.checkpoint_collection)) && length(var.checkpoint_collection) <= 1500 && !contains([".", ".."], var.checkpoint_collection) && !can(regex("^__.*__$", var.checkpoint_collection))
    error_message = "checkpoint_collection must be letters, digits, '_', '.' or '-' (not '.', '..' or __name__)."
  }
}

variable "secret_version" {
  description = "Secret Manager version of the connection strings the functions read (\"latest\", or a number to pin one). Secret environment variables are read when an instance starts."
  type        = string
  default     = "latest"

  validation {
    condition     = can(regex("^(latest|[1-9][0-9]*)$", var.secret_version))
    error_message = "secret_version must be \"latest\" or a version number."
  }
}

variable "deletion_protection" {
  description = "Protect the Firestore database (checkpoints) and the secrets from deletion."
  type        = bool
  default     = true
}

variable "enable_apis" {
  description = "Enable the Google Cloud APIs this deployment uses (never disabled on destroy)."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels added to every resource that takes labels."
  type        = map(string)
  default     = {}
}

variable "max_delivery_attempts" {
  description = "Deliveries of one slice request to the event function before it goes to the dead-letter topic (Pub/Sub allows 5-100)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100 && floor(var.max_delivery_attempts) == var.max_delivery_attempts
    error_message = "max_delivery_attempts must be a whole number from 5 to 100 (Pub/Sub's limits for a dead-letter policy)."
  }
}

# --- alerting (monitoring.tf) ------------------------------------------------------------

variable "notification_channels" {
  description = "Cloud Monitoring notification channel IDs the alert policies notify (projects/PROJECT/notificationChannels/ID). Empty: incidents only show in Cloud Monitoring."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "notification_channels must be notification channel IDs: projects/PROJECT/notificationChannels/ID."
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
  description = "Minutes without any slice before the no-slice alert fires (at least a few schedule periods)."
  type        = number
  default     = 60

  validation {
    condition     = var.no_slice_alert_minutes >= 10 && var.no_slice_alert_minutes <= 1440 && floor(var.no_slice_alert_minutes) == var.no_slice_alert_minutes
    error_message = "no_slice_alert_minutes must be a whole number from 10 to 1440."
  }
}

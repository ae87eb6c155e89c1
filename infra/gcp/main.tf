locals {
  # The topology (variables.tf, network_mode): peered, or public through Cloud NAT.
  public = var.network_mode == "public"
  # The static address a public cluster's allowlist names (network.tf); "" when peered.
  egress_ip = local.public ? google_compute_address.egress[0].address : ""

  # Firestore database ids: 4-63 lowercase letters, digits and hyphens.
  database_id = "${var.name}-checkpoints"

  # The store URL the function reads (handlers/gcp/checkpoint_store.py, docs/stores/firestore.md).
  checkpoint_store = "firestore://${var.checkpoint_collection}?project=${var.project}&database=${local.database_id}"

  # Label values: lowercase letters, digits, '_' and '-', at most 63 characters.
  labels = merge(var.labels, {
    app      = "esdb-relay"
    relay    = var.name
    relayjob = substr(replace(lower(var.job_id), "/[^a-z0-9_-]/", "-"), 0, 63)
  })

  # What both functions read (core/config.py, handlers/gcp/main.py). No connection string here:
  # ESDB_RELAY_SOURCE and ESDB_RELAY_TARGET are secret environment variables (functions.tf).
  relay_environment = {
    ESDB_RELAY_JOB_ID             = var.job_id
    ESDB_RELAY_MODE               = var.mode
    ESDB_RELAY_PARTITIONS         = tostring(var.partitions)
    ESDB_RELAY_SHARDS             = tostring(var.shards)
    ESDB_RELAY_BUDGET__MAX_EVENTS = tostring(var.slice_max_events)
    ESDB_RELAY_SCHEDULE_SECONDS   = tostring(var.schedule_seconds)
    ESDB_RELAY_CHECKPOINT_STORE   = local.checkpoint_store
    ESDB_RELAY_CHAIN_TOPIC        = google_pubsub_topic.slices.id
    ESDB_RELAY_FUNCTION_TIMEOUT   = tostring(var.timeout_seconds)
    GOOGLE_CLOUD_PROJECT          = var.project
    # The preflight action checks the connector's range (the functions' source addresses)
    # lies inside the peering range (peered), or the egress IP, the cluster's public address
    # and its allowlist (public).
    ESDB_RELAY_PREFLIGHT__SUBNETS      = var.connector_cidr
    ESDB_RELAY_PREFLIGHT__PEERING_CIDR = local.public ? "" : var.peering_cidr
    ESDB_RELAY_PREFLIGHT__CLOUD        = "gcp"
    ESDB_RELAY_PREFLIGHT__NETWORK_MODE = var.network_mode
    ESDB_RELAY_PREFLIGHT__EGRESS_IPS   = local.egress_ip
  }
  # job_settings cannot name these keys (variables.tf); merged last, the module's values win.
  environment = merge(var.job_settings, local.relay_environment)

  apis = [
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
    "vpcaccess.googleapis.com",
  ]

  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # Where Cloud Functions (2nd gen) keeps a copy of the uploaded source for the build.
  gcf_sources_bucket = "gcf-v2-sources-${data.google_project.this.number}-${var.region}"
}

data "google_project" "this" {
  project_id = var.project
}

resource "google_project_service" "apis" {
  for_each = var.enable_apis ? toset(local.apis) : toset([])

  project            = var.project
  service            = each.value
  disable_on_destroy = false
}

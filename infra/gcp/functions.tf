# Two Cloud Functions (2nd gen) built from the one zip of `esdb-relay package gcp`:
# - <name>-event: `on_event`, pushed the job's Pub/Sub messages (schedule + chain) by the push
#   subscription in pubsub.tf, retried on failure and dead-lettered there;
# - <name>-http:  `on_http`, the manual invoke (backfill a range, status, preflight).
# Both run as the relay service account, inside the peered VPC through the connector, with
# internal-only ingress and no public invoker.

# --- source and build ------------------------------------------------------------------------

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only the function source zips Terraform uploads; reads and writes are recorded by Cloud Audit Logs, and a second log bucket would need logging of its own.
  project  = var.project
  name     = "${var.project}-${var.name}-source"
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 3
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_object" "source" {
  # The content hash in the name makes a new zip redeploy both functions.
  name   = "esdb-relay-gcp-${filemd5(var.source_zip)}.zip"
  bucket = google_storage_bucket.source.name
  source = var.source_zip
}

# The function images, in a repository of this deployment (so the build identity can push here
# and nowhere else), trimmed to the recent versions.
resource "google_artifact_registry_repository" "functions" {
  #checkov:skip=CKV_GCP_84:Holds the function's container images built from the public esdb-relay source and its public dependencies; no secrets or event data. Google-managed encryption at rest applies.
  project       = var.project
  location      = var.region
  repository_id = "${var.name}-functions"
  description   = "esdb-relay ${var.job_id}: function images built by Cloud Build"
  format        = "DOCKER"

  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 5
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.apis]
}

# --- the functions ---------------------------------------------------------------------------

resource "google_cloudfunctions2_function" "event" {
  project     = var.project
  location    = var.region
  name        = "${var.name}-event"
  description = "esdb-relay ${var.job_id}: one slice per Pub/Sub message (Cloud Scheduler tick or chained request)."

  build_config {
    runtime           = var.runtime
    entry_point       = "on_event"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.relay.email
    timeout_seconds       = var.timeout_seconds
    available_memory      = var.memory
    available_cpu         = var.cpu

    # One invocation at a time per chain: the checkpoint lease would make a second one wait
    # anyway. A sharded job has a chain per shard, and one more instance takes the tick.
    max_instance_count               = var.shards == 1 ? 1 : var.shards + 1
    min_instance_count               = 0
    max_instance_request_concurrency = 1

    # Nothing outside Google Cloud's internal sources (Pub/Sub push in this project, the VPC)
    # can send it a request.
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true

    # Peered: private addresses (the Event Store Cloud cluster over the peering, a source on
    # private addresses) go through the connector into the peered VPC; Google APIs (Firestore,
    # Pub/Sub, Secret Manager) are reached directly on Google's network, so the VPC needs no
    # NAT and the connector carries only EventStoreDB traffic. Public: everything goes through
    # the connector, so that the public cluster sees Cloud NAT's static address (network.tf);
    # Google APIs take Private Google Access from the connector's subnet.
    vpc_connector                 = google_vpc_access_connector.relay.id
    vpc_connector_egress_settings = local.public ? "ALL_TRAFFIC" : "PRIVATE_RANGES_ONLY"

    environment_variables = local.environment

    secret_environment_variables {
      key        = "ESDB_RELAY_SOURCE"
      project_id = var.project
      secret     = google_secret_manager_secret.source.secret_id
      version    = var.secret_version
    }

    secret_environment_variables {
      key        = "ESDB_RELAY_TARGET"
      project_id = var.project
      secret     = google_secret_manager_secret.target.secret_id
      version    = var.secret_version
    }
  }

  depends_on = [
    google_project_iam_member.relay_datastore_user,
    google_secret_manager_secret_iam_member.relay_source,
    google_secret_manager_secret_iam_member.relay_target,
    google_pubsub_topic_iam_member.relay_publisher,
    time_sleep.build_identity_propagation,
  ]
}

resource "google_cloudfunctions2_function" "http" {
  project     = var.project
  location    = var.region
  name        = "${var.name}-http"
  description = "esdb-relay ${var.job_id}: manual invoke (backfill a range, status, preflight); callers need roles/run.invoker."

  build_config {
    runtime           = var.runtime
    entry_point       = "on_http"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.relay.email
    timeout_seconds       = var.timeout_seconds
    available_memory      = var.memory
    available_cpu         = var.cpu

    max_instance_count               = 1
    min_instance_count               = 0
    max_instance_request_concurrency = 1

    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true

    vpc_connector                 = google_vpc_access_connector.relay.id
    vpc_connector_egress_settings = local.public ? "ALL_TRAFFIC" : "PRIVATE_RANGES_ONLY"

    environment_variables = local.environment

    secret_environment_variables {
      key        = "ESDB_RELAY_SOURCE"
      project_id = var.project
      secret     = google_secret_manager_secret.source.secret_id
      version    = var.secret_version
    }

    secret_environment_variables {
      key        = "ESDB_RELAY_TARGET"
      project_id = var.project
      secret     = google_secret_manager_secret.target.secret_id
      version    = var.secret_version
    }
  }

  depends_on = [
    google_project_iam_member.relay_datastore_user,
    google_secret_manager_secret_iam_member.relay_source,
    google_secret_manager_secret_iam_member.relay_target,
    google_pubsub_topic_iam_member.relay_publisher,
    time_sleep.build_identity_propagation,
  ]
}

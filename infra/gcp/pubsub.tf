# Triggers and chaining: Cloud Scheduler publishes `{}` to the job's topic on its schedule; the
# event function runs one slice per message and, when the slice did not reach the source's tail,
# publishes the next request to the same topic (ESDB_RELAY_CHAIN_TOPIC). Overlapping messages are
# safe: the checkpoint lease lets one run.

resource "google_pubsub_topic" "slices" {
  #checkov:skip=CKV_GCP_83:Messages carry only slice requests ({} or {"from": N, "to": M}): no event data, no secrets. Google-managed encryption at rest applies; a CMEK key adds cost and a key to run for no protected data.
  project = var.project
  name    = "${var.name}-slices"

  depends_on = [google_project_service.apis]
}

# The job's topic is pushed to the event function by a subscription of this deployment (not an
# Eventarc trigger, whose subscription Terraform cannot configure), so retries and dead-lettering
# are set here: a failed slice raises (HTTP 500), Pub/Sub delivers the message again with
# backoff, and after max_delivery_attempts it goes to the dead-letter topic. functions-framework
# turns the push request into the CloudEvent on_event takes.
resource "google_pubsub_subscription" "push" {
  project = var.project
  name    = "${var.name}-slices-push"
  topic   = google_pubsub_topic.slices.id

  # The longest a delivery may take before Pub/Sub counts it failed: at least the function's
  # timeout (600 s is Pub/Sub's maximum; the timeout is at most 540 s).
  ack_deadline_seconds       = 600
  message_retention_duration = "86400s"

  push_config {
    push_endpoint = google_cloudfunctions2_function.event.service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.trigger.email
      audience              = google_cloudfunctions2_function.event.service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_pubsub_topic_iam_member.pubsub_dead_letters,
    google_pubsub_subscription_iam_member.pubsub_dead_letters,
    google_cloud_run_v2_service_iam_member.trigger_invokes_event,
  ]
}

# Requests the event function kept failing on (after max_delivery_attempts).
resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Same content as the slices topic (slice requests, no event data or secrets); Google-managed encryption at rest applies.
  project = var.project
  name    = "${var.name}-slices-dead-letter"

  depends_on = [google_project_service.apis]
}

# Keeps dead-lettered requests for a week for inspection and replay (a topic without a
# subscription drops them).
resource "google_pubsub_subscription" "dead_letter" {
  project = var.project
  name    = "${var.name}-slices-dead-letter"
  topic   = google_pubsub_topic.dead_letter.id

  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = ""
  }
}

# Pub/Sub forwards undeliverable messages as its service agent: it publishes to the dead-letter
# topic and acknowledges them on the push subscription (both roles, as Pub/Sub's dead-letter
# documentation asks).
resource "google_pubsub_topic_iam_member" "pubsub_dead_letters" {
  project = var.project
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_dead_letters" {
  project      = var.project
  subscription = "${var.name}-slices-push"
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent

  depends_on = [google_pubsub_topic.slices]
}

resource "google_cloud_scheduler_job" "tick" {
  project     = var.project
  region      = var.region
  name        = "${var.name}-tick"
  description = "esdb-relay ${var.job_id}: one slice per tick (a slice that is behind chains the next one itself)."
  schedule    = var.schedule
  time_zone   = var.time_zone
  paused      = var.paused

  pubsub_target {
    topic_name = google_pubsub_topic.slices.id
    data       = base64encode("{}")
  }

  retry_config {
    retry_count = 1
  }

  depends_on = [google_project_service.apis]
}

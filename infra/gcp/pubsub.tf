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

# Requests the event function kept failing on. Eventarc creates and owns the push subscription
# of the function's trigger, so the dead-letter policy is attached to it after apply with the
# command in output `attach_dead_letter_topic` (docs/deploy-gcp.md, step 6).
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

# Pub/Sub forwards undeliverable messages as its service agent.
resource "google_pubsub_topic_iam_member" "pubsub_dead_letters" {
  project = var.project
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
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

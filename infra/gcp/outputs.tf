output "event_function" {
  description = "The Pub/Sub-triggered function (scheduled and chained slices)."
  value       = google_cloudfunctions2_function.event.name
}

output "http_function" {
  description = "The manual-invoke function (internal ingress: call it from inside the VPC)."
  value       = google_cloudfunctions2_function.http.name
}

output "http_function_url" {
  description = "URL of the manual-invoke function (needs an identity token of an operator, from inside the VPC)."
  value       = google_cloudfunctions2_function.http.service_config[0].uri
}

output "topic" {
  description = "The job's topic (ESDB_RELAY_CHAIN_TOPIC): publish a slice request here to run one from anywhere."
  value       = google_pubsub_topic.slices.id
}

output "push_subscription" {
  description = "The subscription that pushes the job's topic to the event function (retries, dead-lettering)."
  value       = google_pubsub_subscription.push.id
}

output "dead_letter_subscription" {
  description = "Slice requests the event function kept failing on (after max_delivery_attempts)."
  value       = google_pubsub_subscription.dead_letter.id
}

output "scheduler_job" {
  description = "The Cloud Scheduler job that publishes {} to the topic on the schedule."
  value       = google_cloud_scheduler_job.tick.id
}

output "service_account" {
  description = "The functions' dedicated service account."
  value       = google_service_account.relay.email
}

output "trigger_service_account" {
  description = "The identity the job's push subscription invokes the event function as."
  value       = google_service_account.trigger.email
}

output "checkpoint_store" {
  description = "ESDB_RELAY_CHECKPOINT_STORE of the functions (also usable by `esdb-relay status` from a laptop with access to the database)."
  value       = local.checkpoint_store
}

output "firestore_database" {
  description = "The checkpoint database."
  value       = google_firestore_database.checkpoints.name
}

output "connector" {
  description = "The Serverless VPC Access connector and its subnet range (inside the peering range)."
  value       = local.public ? "${google_vpc_access_connector.relay.id} (${var.connector_cidr}, through Cloud NAT ${google_compute_router_nat.egress[0].name})" : "${google_vpc_access_connector.relay.id} (${var.connector_cidr} in ${var.peering_cidr})"
}

output "egress_ip" {
  description = "network_mode = \"public\": the static address the functions' connections to the cluster leave from. Add it to the cluster's IP allowlist (docs/deploy-gcp.md). Null when peered."
  value       = local.public ? google_compute_address.egress[0].address : null
}

output "secrets" {
  description = "Secret Manager secrets to give a version each (the values never go through Terraform)."
  value = {
    ESDB_RELAY_SOURCE = google_secret_manager_secret.source.id
    ESDB_RELAY_TARGET = google_secret_manager_secret.target.id
  }
}

output "add_secret_versions" {
  description = "Commands that add the connection strings as secret versions (they read the value from stdin)."
  value = join("\n", [
    "gcloud secrets versions add ${google_secret_manager_secret.source.secret_id} --project=${var.project} --data-file=-",
    "gcloud secrets versions add ${google_secret_manager_secret.target.secret_id} --project=${var.project} --data-file=-",
  ])
}

# Identities, each with only what it needs:
# - relay:   what the functions run as: the checkpoint database, the two secrets, the job's topic,
#            logs and metrics. Nothing else.
# - trigger: what Eventarc's push subscription authenticates as: invoke the event function only.
# - build:   what Cloud Build builds the function image as: read the source zip, push to this
#            deployment's Artifact Registry repository, write build logs.

resource "google_service_account" "relay" {
  project      = var.project
  account_id   = "${var.name}-fn"
  display_name = "esdb-relay ${var.job_id}: functions"
  description  = "Runs the esdb-relay functions of job ${var.job_id}; dedicated, least privilege (infra/gcp/iam.tf)."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "trigger" {
  project      = var.project
  account_id   = "${var.name}-trigger"
  display_name = "esdb-relay ${var.job_id}: Pub/Sub trigger"
  description  = "Identity of the Eventarc push subscription that invokes the esdb-relay event function."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "build" {
  project      = var.project
  account_id   = "${var.name}-build"
  display_name = "esdb-relay ${var.job_id}: build"
  description  = "Cloud Build identity that builds the esdb-relay function image."

  depends_on = [google_project_service.apis]
}

# --- relay: the functions' runtime identity ------------------------------------------------

# Firestore: read/write documents of this deployment's database only (IAM condition on the
# database resource name, Firestore's per-database access control).
resource "google_project_iam_member" "relay_datastore_user" {
  project = var.project
  role    = "roles/datastore.user"
  member  = google_service_account.relay.member

  condition {
    title       = "${var.name}-checkpoints-only"
    description = "Only the esdb-relay checkpoint database."
    expression  = "resource.name == \"projects/${var.project}/databases/${local.database_id}\""
  }
}

resource "google_secret_manager_secret_iam_member" "relay_source" {
  project   = var.project
  secret_id = google_secret_manager_secret.source.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.relay.member
}

resource "google_secret_manager_secret_iam_member" "relay_target" {
  project   = var.project
  secret_id = google_secret_manager_secret.target.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.relay.member
}

# Chaining: publish the next slice's request to the job's own topic, no other.
resource "google_pubsub_topic_iam_member" "relay_publisher" {
  project = var.project
  topic   = google_pubsub_topic.slices.name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.relay.member
}

resource "google_project_iam_member" "relay_log_writer" {
  project = var.project
  role    = "roles/logging.logWriter"
  member  = google_service_account.relay.member
}

resource "google_project_iam_member" "relay_metric_writer" {
  project = var.project
  role    = "roles/monitoring.metricWriter"
  member  = google_service_account.relay.member
}

# --- trigger: Eventarc's push identity -----------------------------------------------------

resource "google_cloud_run_v2_service_iam_member" "trigger_invokes_event" {
  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.event.name
  role     = "roles/run.invoker"
  member   = google_service_account.trigger.member
}

# Pub/Sub signs the push requests' OIDC tokens as the trigger identity (granted by default only
# in projects created after April 2021); scoped to that one service account.
resource "google_service_account_iam_member" "pubsub_signs_as_trigger" {
  service_account_id = google_service_account.trigger.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

# --- build: Cloud Build ----------------------------------------------------------------------

resource "google_storage_bucket_iam_member" "build_reads_source" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}

resource "google_artifact_registry_repository_iam_member" "build_pushes_image" {
  project    = var.project
  location   = var.region
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

resource "google_project_iam_member" "build_log_writer" {
  project = var.project
  role    = "roles/logging.logWriter"
  member  = google_service_account.build.member
}

# --- operators: manual invokes ----------------------------------------------------------------

# Who may call the HTTP function (from inside the VPC: its ingress is internal-only) ...
resource "google_cloud_run_v2_service_iam_member" "operators_invoke_http" {
  for_each = toset(var.operators)

  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.http.name
  role     = "roles/run.invoker"
  member   = each.value
}

# ... and publish a slice request to the job's topic (a backfill from anywhere).
resource "google_pubsub_topic_iam_member" "operators_publish" {
  for_each = toset(var.operators)

  project = var.project
  topic   = google_pubsub_topic.slices.name
  role    = "roles/pubsub.publisher"
  member  = each.value
}

# Identities, each with only what it needs:
# - relay:   what the functions run as: the checkpoint database, the two secrets, the job's topic,
#            logs and metrics. Nothing else.
# - trigger: what the job's push subscription authenticates as: invoke the event function only.
# - build:   what Cloud Build builds the function image as: the function source buckets, push
#            to this deployment's Artifact Registry repository, write build logs.

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
  description  = "Identity of the push subscription that invokes the esdb-relay event function."

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

# --- trigger: the push subscription's identity -----------------------------------------------------

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

# Cloud Functions copies the uploaded source into its own bucket, gcf-v2-sources-NUMBER-REGION,
# and the build reads it from there (and writes to it), so the build identity needs object
# admin on that bucket as well as read access to ours: Google's own example for a custom build
# service account grants roles/storage.objectAdmin. That bucket is created on the first deploy,
# so the grant is project-wide, conditioned on the two buckets' names.
resource "google_project_iam_member" "build_sources" {
  project = var.project
  role    = "roles/storage.objectAdmin"
  member  = google_service_account.build.member

  condition {
    title       = "${var.name}-function-sources"
    description = "Only the function source buckets: Cloud Functions' own and this deployment's."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${local.gcf_sources_bucket}\") || resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.source.name}\")"
  }
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

# IAM grants take a while to reach every Google service: a build started at once can fail on a
# role it was just given. Google's example for a custom build service account waits 60 s.
resource "time_sleep" "build_identity_propagation" {
  create_duration = "60s"

  depends_on = [
    google_project_iam_member.build_sources,
    google_artifact_registry_repository_iam_member.build_pushes_image,
    google_project_iam_member.build_log_writer,
    google_service_account_iam_member.pubsub_signs_as_trigger,
    google_pubsub_subscription_iam_member.pubsub_dead_letters,
  ]
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

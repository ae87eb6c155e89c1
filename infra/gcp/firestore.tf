# The checkpoint store: a Firestore database in Native mode of its own (the store's transactions
# need Native mode; docs/stores/firestore.md), reachable only by the relay service account
# (iam.tf, per-database IAM condition).

resource "google_firestore_database" "checkpoints" {
  project     = var.project
  name        = local.database_id
  location_id = coalesce(var.firestore_location, var.region)
  type        = "FIRESTORE_NATIVE"

  # Lock-based transactions: the store's lease and commit transactions serialise on the job's
  # document instead of retrying optimistic conflicts.
  concurrency_mode                  = "PESSIMISTIC"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  # `terraform destroy` leaves the checkpoints alone (ABANDON); delete them by hand when the
  # migration is over (docs/deploy-gcp.md, "Stopping").
  deletion_policy = "ABANDON"

  depends_on = [google_project_service.apis]
}

# TTL policy for the slice history: the store writes `expire_at` (HISTORY_TTL_DAYS after the
# slice) on every record in the `slices` subcollections (collection group), and keeps only the
# newest records anyway; the policy removes the history of jobs that stopped long ago.
resource "google_firestore_field" "slices_expire_at" {
  project    = var.project
  database   = google_firestore_database.checkpoints.name
  collection = "slices"
  field      = "expire_at"

  ttl_config {}

  # No query reads expire_at: no single-field indexes on it (a monotonically increasing
  # timestamp index only costs writes).
  index_config {}
}

# Index exemptions (docs/stores/firestore.md): no query reads inside a slice record or a
# checkpoint map, so indexing them only costs writes. `seq` stays indexed: history() orders by it.
resource "google_firestore_field" "slices_record" {
  project    = var.project
  database   = google_firestore_database.checkpoints.name
  collection = "slices"
  field      = "record"

  index_config {}
}

resource "google_firestore_field" "jobs_checkpoint" {
  project    = var.project
  database   = google_firestore_database.checkpoints.name
  collection = var.checkpoint_collection
  field      = "checkpoint"

  index_config {}
}

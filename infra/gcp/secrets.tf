# The two connection strings live in Secret Manager only. Terraform creates the secret
# containers; the operator adds the values with `gcloud secrets versions add` (docs/deploy-gcp.md,
# step 5), so they never appear in Terraform's configuration, plan or state. The functions read
# them as secret environment variables (ESDB_RELAY_SOURCE, ESDB_RELAY_TARGET).

resource "google_secret_manager_secret" "source" {
  project   = var.project
  secret_id = "${var.name}-source"

  # Kept in the functions' region only.
  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  deletion_protection = var.deletion_protection

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret" "target" {
  project   = var.project
  secret_id = "${var.name}-target"

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  deletion_protection = var.deletion_protection

  depends_on = [google_project_service.apis]
}

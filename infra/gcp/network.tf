# The functions reach the Event Store Cloud cluster (and a self-hosted source on private
# addresses) through a Serverless VPC Access connector in the peered VPC. The connector's /28
# subnet lies inside the peering range (variables.tf checks it): Event Store Cloud peers exactly
# one range, and traffic from any other range is not routed back to us.

resource "google_compute_subnetwork" "connector" {
  project       = var.project
  region        = var.region
  network       = var.network
  name          = "${var.name}-connector"
  description   = "esdb-relay ${var.job_id}: Serverless VPC Access connector, inside the Event Store Cloud peering range ${var.peering_cidr}"
  ip_cidr_range = var.connector_cidr

  # The connector's instances reach Google APIs without external addresses.
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_5_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }

  depends_on = [google_project_service.apis]
}

resource "google_vpc_access_connector" "relay" {
  project = var.project
  region  = var.region
  name    = "${var.name}-vpc"

  subnet {
    name       = google_compute_subnetwork.connector.name
    project_id = var.project
  }

  # The smallest connector: one job moves at most a few MB/s.
  machine_type  = "e2-micro"
  min_instances = 2
  max_instances = 3
}

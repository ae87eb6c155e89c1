# The functions reach the Event Store Cloud cluster (and a self-hosted source on private
# addresses) through a Serverless VPC Access connector in the VPC.
#
# network_mode = "peered": the VPC is peered with Event Store Cloud, and the connector's /28
# subnet lies inside the peering range (variables.tf checks it): Event Store Cloud peers exactly
# one range, and traffic from any other range is not routed back to us.
#
# network_mode = "public": a public cluster with an IP allowlist. The functions send all their
# traffic through the connector (functions.tf), and Cloud NAT translates what the connector's
# subnet sends to the internet to one reserved static address, which the allowlist names.
# Google APIs stay on Private Google Access (the subnet's setting below), not the NAT.

resource "google_compute_subnetwork" "connector" {
  project       = var.project
  region        = var.region
  network       = var.network
  name          = "${var.name}-connector"
  description   = local.public ? "esdb-relay ${var.job_id}: Serverless VPC Access connector, its internet traffic through Cloud NAT ${var.name}-nat" : "esdb-relay ${var.job_id}: Serverless VPC Access connector, inside the Event Store Cloud peering range ${var.peering_cidr}"
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

# --- the public topology: Cloud NAT with a reserved static address ---------------------------

resource "google_compute_address" "egress" {
  count = local.public ? 1 : 0

  project      = var.project
  region       = var.region
  name         = "${var.name}-egress"
  description  = "esdb-relay ${var.job_id}: the static address the functions' connections to the public cluster leave from; add it to the cluster's IP allowlist"
  address_type = "EXTERNAL"
  network_tier = "PREMIUM"

  depends_on = [google_project_service.apis]
}

resource "google_compute_router" "egress" {
  count = local.public ? 1 : 0

  project     = var.project
  region      = var.region
  name        = "${var.name}-router"
  description = "esdb-relay ${var.job_id}: Cloud NAT for the connector's subnet"
  network     = var.network

  depends_on = [google_project_service.apis]
}

resource "google_compute_router_nat" "egress" {
  count = local.public ? 1 : 0

  project = var.project
  region  = var.region
  router  = google_compute_router.egress[0].name
  name    = "${var.name}-nat"

  # Only the connector's subnet, only through the reserved address: nothing else in the VPC
  # changes, and the address stays the same for as long as this deployment exists.
  nat_ip_allocate_option             = "MANUAL_ONLY"
  nat_ips                            = [google_compute_address.egress[0].self_link]
  source_subnetwork_ip_ranges_to_nat = "LIST_OF_SUBNETWORKS"

  subnetwork {
    name                    = google_compute_subnetwork.connector.id
    source_ip_ranges_to_nat = ["ALL_IP_RANGES"]
  }

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# An example job: copy it (e.g. to orders.tfvars), edit, and pass it with -var-file.
# docs/deploy-gcp.md explains each value.

project = "my-migration-project"
region  = "europe-west1"
name    = "orders-relay"

# The VPC peered with Event Store Cloud, the peering's remote address range, and a free /28 inside
# it for the connector (here the last /28 of the range).
network        = "vpc-esc"
peering_cidr   = "10.10.0.0/16"
connector_cidr = "10.10.255.240/28"
esc_cidr       = "172.29.0.0/16"

job_id           = "orders-migration"
schedule         = "*/5 * * * *"
mode             = "ordered"
partitions       = 1
slice_max_events = 20000

# Built by `esdb-relay package gcp` (the path it prints).
source_zip = "../../dist/esdb-relay-gcp-0.1.0.zip"
runtime    = "python311"

operators = ["group:migration-team@example.com"]

job_settings = {
  ESDB_RELAY_FILTERS__EXCLUDE_STREAM_PREFIXES = "[\"test-\"]"
}

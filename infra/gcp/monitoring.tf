# Alerting, matching the AWS template's alarms: lag, failed slices, no slice at all, dead letters.
# The relay writes one JSON line per slice (core/logs.py: jsonPayload.slice.*, with Cloud
# Logging's `severity`); log-based metrics count them, alert policies watch the metrics and
# notify var.notification_channels (none: the incidents only show in Cloud Monitoring).

locals {
  # Both functions' log lines (each function is a Cloud Run service of the same name).
  function_logs = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(\"${var.name}-event\" OR \"${var.name}-http\")"
}

resource "google_logging_metric" "lag_bytes" {
  project     = var.project
  name        = "${var.name}-lag-bytes"
  description = "esdb-relay ${var.job_id}: source log bytes still to copy, per slice."
  filter      = "${local.function_logs} AND jsonPayload.slice.lag_bytes>=0"

  value_extractor = "EXTRACT(jsonPayload.slice.lag_bytes)"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "By"
  }
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 64
      growth_factor      = 2
      scale              = 1
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_logging_metric" "slices" {
  project     = var.project
  name        = "${var.name}-slices"
  description = "esdb-relay ${var.job_id}: slices that ran (any outcome)."
  filter      = "${local.function_logs} AND jsonPayload.slice.status:*"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }

  depends_on = [google_project_service.apis]
}

resource "google_logging_metric" "error_lines" {
  project     = var.project
  name        = "${var.name}-error-lines"
  description = "esdb-relay ${var.job_id}: error lines (failed slices, refused invocations)."
  filter      = "${local.function_logs} AND severity>=ERROR AND jsonPayload.logger=\"esdb_relay\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "lag" {
  project      = var.project
  display_name = "esdb-relay ${var.job_id}: lag"
  combiner     = "OR"
  documentation {
    content = "Every slice for ${var.lag_alert_hours} h reported more than ${var.lag_alert_bytes} source log bytes still to copy. Expected during the first backfill; otherwise the source writes faster than the relay copies (docs/deploy-gcp.md, step 9)."
  }

  conditions {
    display_name = "lag above ${var.lag_alert_bytes} bytes for ${var.lag_alert_hours} h"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.lag_bytes.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.lag_alert_bytes
      duration        = "${var.lag_alert_hours * 3600}s"
      aggregations {
        alignment_period     = "3600s"
        per_series_aligner   = "ALIGN_PERCENTILE_05"
        cross_series_reducer = "REDUCE_MIN"
      }
    }
  }

  notification_channels = var.notification_channels
}

resource "google_monitoring_alert_policy" "failed_slices" {
  project      = var.project
  display_name = "esdb-relay ${var.job_id}: failed slices"
  combiner     = "OR"
  documentation {
    content = "esdb-relay ${var.job_id} logged errors (failed slices or refused invocations) in two consecutive 15-minute windows. Read them with the query in docs/deploy-gcp.md, step 9."
  }

  conditions {
    display_name = "error lines in 30 minutes"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.error_lines.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "1800s"
      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  notification_channels = var.notification_channels
}

resource "google_monitoring_alert_policy" "no_slice" {
  project      = var.project
  display_name = "esdb-relay ${var.job_id}: no slice"
  combiner     = "OR"
  documentation {
    content = "No slice of esdb-relay ${var.job_id} ran for ${var.no_slice_alert_minutes} minutes: the schedule is paused, the function fails before a slice starts (build, secrets, identity), or Pub/Sub cannot deliver."
  }

  conditions {
    display_name = "no slice for ${var.no_slice_alert_minutes} minutes"
    condition_absent {
      filter   = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.slices.name}\" AND resource.type=\"cloud_run_revision\""
      duration = "${var.no_slice_alert_minutes * 60}s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  notification_channels = var.notification_channels
}

resource "google_monitoring_alert_policy" "dead_letters" {
  project      = var.project
  display_name = "esdb-relay ${var.job_id}: dead letters"
  combiner     = "OR"
  documentation {
    content = "A slice request failed ${var.max_delivery_attempts} times and was parked on ${google_pubsub_topic.dead_letter.name}. A backfill range does not resume by itself: publish it again (docs/deploy-gcp.md, step 9)."
  }

  conditions {
    display_name = "messages on the dead-letter subscription"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${google_pubsub_subscription.dead_letter.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  notification_channels = var.notification_channels
}

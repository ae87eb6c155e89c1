# Alerting, matching the AWS template's alarms: lag, failed slices, no slice at all, dead letters.
# The relay writes one JSON line per slice (core/logs.py: jsonPayload.slice.*, with Cloud
# Logging's `severity`); log-based metrics count them, alert policies watch the metrics and
# notify var.notification_channels (none: the incidents only show in Cloud Monitoring).

locals {
  # Both functions' log lines (each function is a Cloud Run service of the same name).
  function_logs = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(\"${var.name}-event\" OR \"${var.name}-http\")"
}

# The handler writes each slice's figures as one JSON line (core/metrics.py, log_sample):
# {"severity": "INFO", "message": "metrics", "job_id": ..., "metrics": {"lag_bytes": ..., ...}}.
# One distribution metric per figure extracts it; the dashboard and the alerts read them.
locals {
  relay_metrics = {
    lag_bytes            = { unit = "By", description = "Source log bytes not yet copied." }
    lag_events           = { unit = "1", description = "Events not yet copied (estimated from the slice's bytes per event)." }
    lag_seconds          = { unit = "s", description = "Age of the oldest source event not yet copied." }
    copy_rate            = { unit = "1/s", description = "Events read per second by the slice." }
    source_write_rate    = { unit = "1/s", description = "Events appended to the source per second, recently." }
    slice_seconds        = { unit = "s", description = "Duration of the slice." }
    events_written       = { unit = "1", description = "Events written to the target by the slice." }
    dead_lettered        = { unit = "1", description = "Events sent to the dead-letter stream by the slice." }
    failed_slices        = { unit = "1", description = "1 for a failed slice, 0 for a successful one." }
    consecutive_failures = { unit = "1", description = "Failed slices in a row, up to the newest." }
    last_success_age     = { unit = "s", description = "Seconds since the newest successful slice finished." }
  }
  relay_metric_type = { for k, m in local.relay_metrics : k => "logging.googleapis.com/user/${var.name}-${replace(k, "_", "-")}" }
}

resource "google_logging_metric" "relay" {
  for_each    = local.relay_metrics
  project     = var.project
  name        = "${var.name}-${replace(each.key, "_", "-")}"
  description = "esdb-relay ${var.job_id}: ${each.value.description}"
  filter      = "${local.function_logs} AND jsonPayload.message=\"metrics\" AND jsonPayload.metrics.${each.key}:*"

  value_extractor = "EXTRACT(jsonPayload.metrics.${each.key})"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = each.value.unit
  }
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 64
      growth_factor      = 2
      scale              = 0.01
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
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.relay["lag_bytes"].name}\" AND resource.type=\"cloud_run_revision\""
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

resource "google_monitoring_alert_policy" "stalled" {
  project      = var.project
  display_name = "esdb-relay ${var.job_id}: stalled"
  combiner     = "OR"
  documentation {
    content = "3 or more slices of esdb-relay ${var.job_id} failed in a row: the job makes no progress. Read the error lines and run `esdb-relay preflight` (docs/operations.md, stalled)."
  }

  conditions {
    display_name = "3 failed slices in a row"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.relay["consecutive_failures"].name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 2.5
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_PERCENTILE_99"
        cross_series_reducer = "REDUCE_MAX"
      }
    }
  }

  notification_channels = var.notification_channels
}

resource "google_monitoring_alert_policy" "dead_lettered" {
  project      = var.project
  display_name = "esdb-relay ${var.job_id}: dead-lettered events"
  combiner     = "OR"
  documentation {
    content = "Events of esdb-relay ${var.job_id} were written to the target's dead-letter stream $esdb-relay-dead-letters-${var.job_id} instead of their own (docs/operations.md, dead-lettered)."
  }

  conditions {
    display_name = "events dead-lettered in the last hour"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.relay["dead_lettered"].name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0.5
      duration        = "0s"
      aggregations {
        alignment_period     = "3600s"
        per_series_aligner   = "ALIGN_PERCENTILE_99"
        cross_series_reducer = "REDUCE_MAX"
      }
    }
  }

  notification_channels = var.notification_channels
}

# One dashboard per job: each figure of core/metrics.py and the alerts' incidents.
resource "google_monitoring_dashboard" "relay" {
  project = var.project
  dashboard_json = jsonencode({
    displayName = "esdb-relay ${var.job_id}"
    mosaicLayout = {
      columns = 12
      tiles = concat(
        [for i, k in keys(local.relay_metrics) : {
          xPos   = (i % 3) * 4
          yPos   = floor(i / 3) * 4
          width  = 4
          height = 4
          widget = {
            title = "${k} (${local.relay_metrics[k].unit})"
            xyChart = {
              dataSets = [{
                plotType = "LINE"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"${local.relay_metric_type[k]}\" AND resource.type=\"cloud_run_revision\""
                    aggregation = {
                      alignmentPeriod    = "300s"
                      perSeriesAligner   = "ALIGN_PERCENTILE_50"
                      crossSeriesReducer = "REDUCE_MEAN"
                    }
                  }
                }
              }]
            }
          }
        }],
        [{
          xPos   = 0
          yPos   = 16
          width  = 12
          height = 4
          widget = {
            title = "Alerts"
            incidentList = {
              policyNames = [
                google_monitoring_alert_policy.lag.name,
                google_monitoring_alert_policy.failed_slices.name,
                google_monitoring_alert_policy.no_slice.name,
                google_monitoring_alert_policy.dead_letters.name,
                google_monitoring_alert_policy.stalled.name,
                google_monitoring_alert_policy.dead_lettered.name,
              ]
            }
          }
        }]
      )
    }
  })
}

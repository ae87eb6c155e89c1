# Logs: each slice writes one JSON line with its figures; the host sends them to Application
# Insights (workspace-based), authenticated with the function's managed identity.

resource "azurerm_log_analytics_workspace" "relay" {
  name                = local.names.log_analytics
  location            = azurerm_resource_group.relay.location
  resource_group_name = azurerm_resource_group.relay.name
  sku                 = "PerGB2018"
  retention_in_days   = 90
  tags                = local.tags
}

resource "azurerm_application_insights" "relay" {
  name                         = local.names.app_insights
  location                     = azurerm_resource_group.relay.location
  resource_group_name          = azurerm_resource_group.relay.name
  workspace_id                 = azurerm_log_analytics_workspace.relay.id
  application_type             = "other"
  local_authentication_enabled = false
  tags                         = local.tags
}

# Alerts, matching the AWS template's alarms: lag, failed slices, no slice at all, dead letters.
# Each is a log search alert on Application Insights' traces: the relay writes one JSON line per
# slice (core/logs.py: "logger": "esdb_relay", the figures under "slice"), and the host logs
# each chain message it moves to the poison queue. They notify var.alert_action_group_ids.

locals {
  relay_lines = <<-KQL
    traces
    | where message has '"logger": "esdb_relay"'
    | extend e = parse_json(message)
  KQL

  # The handler's custom metrics (handlers/azure/metrics.py): customMetrics rows named
  # esdb_relay_<figure> with the job in customDimensions.job_id.
  relay_metric = "customMetrics\n| where tostring(customDimensions.job_id) == '${var.job_id}'\n| where name == "

  alerts = {
    lag = {
      description = "Every slice for ${var.lag_alert_hours} h reported more than ${var.lag_alert_bytes} source log bytes still to copy. Expected during the first backfill; otherwise the source writes faster than the relay copies (docs/operations.md, lag)."
      severity    = 2
      frequency   = "PT1H"
      window      = "PT${var.lag_alert_hours}H"
      query       = "${local.relay_metric}'esdb_relay_lag_bytes'\n| summarize value = min(valueMin)"
      operator    = "GreaterThan"
      threshold   = var.lag_alert_bytes
    }
    failed_slices = {
      description = "esdb-relay ${var.job_id} logged errors (failed slices or refused invocations) in the last 30 minutes."
      severity    = 1
      frequency   = "PT15M"
      window      = "PT30M"
      query       = "${local.relay_lines}| where tostring(e.level) == 'error'\n| summarize value = count()"
      operator    = "GreaterThan"
      threshold   = 0
    }
    no_slice = {
      description = "No slice of esdb-relay ${var.job_id} ran for ${var.no_slice_alert_minutes} minutes: the app is stopped, the timer disabled, or the function fails before a slice starts (secrets, identity)."
      severity    = 1
      frequency   = "PT15M"
      window      = "PT${var.no_slice_alert_minutes}M"
      query       = "${local.relay_lines}| where isnotnull(e.slice.status)\n| summarize value = count()"
      operator    = "LessThan"
      threshold   = 1
    }
    stalled = {
      description = "3 or more slices of ${var.job_id} failed in a row: the job makes no progress. Read the error lines; run `esdb-relay preflight` (docs/operations.md, stalled)."
      severity    = 1
      frequency   = "PT5M"
      window      = "PT15M"
      query       = "${local.relay_metric}'esdb_relay_consecutive_failures'\n| summarize value = max(valueMax)"
      operator    = "GreaterThanOrEqual"
      threshold   = 3
    }
    dead_lettered = {
      description = "Events of ${var.job_id} were written to the target's dead-letter stream $esdb-relay-dead-letters-${var.job_id} instead of their own (docs/operations.md, dead-lettered)."
      severity    = 2
      frequency   = "PT1H"
      window      = "PT1H"
      query       = "${local.relay_metric}'esdb_relay_dead_lettered'\n| summarize value = sum(valueSum)"
      operator    = "GreaterThan"
      threshold   = 0
    }
    dead_letters = {
      description = "A chained slice of ${var.job_id} failed maxDequeueCount times and was moved to ${local.poison_queue}. A backfill range does not resume by itself: invoke it again."
      severity    = 1
      frequency   = "PT15M"
      window      = "PT15M"
      query       = "traces\n| where message has 'Moving message to queue' and message has '${local.poison_queue}'\n| summarize value = count()"
      operator    = "GreaterThan"
      threshold   = 0
    }
  }
}

resource "azurerm_monitor_scheduled_query_rules_alert_v2" "relay" {
  for_each             = local.alerts
  name                 = "${var.name}-${replace(each.key, "_", "-")}"
  resource_group_name  = azurerm_resource_group.relay.name
  location             = azurerm_resource_group.relay.location
  description          = each.value.description
  severity             = each.value.severity
  scopes               = [azurerm_application_insights.relay.id]
  evaluation_frequency = each.value.frequency
  window_duration      = each.value.window
  tags                 = local.tags

  criteria {
    query                   = each.value.query
    time_aggregation_method = "Maximum"
    metric_measure_column   = "value"
    operator                = each.value.operator
    threshold               = each.value.threshold

    failing_periods {
      minimum_failing_periods_to_trigger_alert = 1
      number_of_evaluation_periods             = 1
    }
  }

  dynamic "action" {
    for_each = length(var.alert_action_group_ids) > 0 ? [1] : []
    content {
      action_groups = var.alert_action_group_ids
    }
  }
}

# The job's workbook: each figure of core/metrics.py from customMetrics, and the alerts' rules.
locals {
  # counter: a per-slice amount, summed; otherwise the value each slice reported.
  workbook_metrics = {
    esdb_relay_lag_bytes            = { title = "Lag (bytes)", counter = false }
    esdb_relay_lag_events           = { title = "Lag (events)", counter = false }
    esdb_relay_lag_seconds          = { title = "Behind the source (seconds)", counter = false }
    esdb_relay_copy_rate            = { title = "Copy rate (events/s)", counter = false }
    esdb_relay_source_write_rate    = { title = "Source write rate (events/s)", counter = false }
    esdb_relay_slice_seconds        = { title = "Slice duration (s)", counter = false }
    esdb_relay_events_written       = { title = "Events written", counter = true }
    esdb_relay_dead_lettered        = { title = "Dead-lettered events", counter = true }
    esdb_relay_failed_slices        = { title = "Failed slices", counter = true }
    esdb_relay_consecutive_failures = { title = "Failed slices in a row", counter = false }
    esdb_relay_last_success_age     = { title = "Seconds since the last successful slice", counter = false }
  }
}

resource "azurerm_application_insights_workbook" "relay" {
  name                = uuidv5("url", "https://esdb-relay/${var.name}/workbook")
  resource_group_name = azurerm_resource_group.relay.name
  location            = azurerm_resource_group.relay.location
  display_name        = "esdb-relay ${var.job_id}"
  source_id           = lower(azurerm_application_insights.relay.id)
  tags                = local.tags
  data_json = jsonencode({
    version = "Notebook/1.0"
    items = concat(
      [for name, metric in local.workbook_metrics : {
        type = 3
        name = name
        content = {
          version       = "KqlItem/1.0"
          title         = metric.title
          query         = "${local.relay_metric}'${name}'\n| summarize value = ${metric.counter ? "sum(valueSum)" : "avg(valueSum / valueCount)"} by bin(timestamp, 5m)\n| render timechart"
          size          = 0
          timeContext   = { durationMs = 86400000 }
          queryType     = 0
          resourceType  = "microsoft.insights/components"
          visualization = "timechart"
        }
      }],
      [{
        type = 3
        name = "alerts"
        content = {
          version      = "KqlItem/1.0"
          title        = "Alert rules"
          query        = "alertsmanagementresources\n| where properties.essentials.alertRule has '${var.name}-'"
          size         = 0
          queryType    = 1
          resourceType = "microsoft.resourcegraph/resources"
        }
      }]
    )
    fallbackResourceIds = [azurerm_application_insights.relay.id]
    "$schema"           = "https://github.com/Microsoft/Application-Insights-Workbooks/blob/master/schema/workbook.json"
  })
}

// The operators' view: an Azure Monitor workbook over the per-mailbox metrics records, and
// an alert when a mailbox has gone too long without a successful poll.

param location string
param tags object = {}
param appInsightsId string
param appInsightsName string

@description('Action group the lag alert notifies; empty: the rule exists but notifies nobody.')
param actionGroupId string = ''

@description('The lag alert fires when a mailbox has had no successful poll for this many minutes.')
@minValue(15)
@maxValue(10080)
param lagAlertMinutes int = 120

@description('Amber in the workbook: no successful poll for this many minutes.')
@minValue(5)
param amberMinutes int = 30

var metrics = loadTextContent('../queries/mailbox-metrics.kql')

var deliveredQuery = '${metrics}\n| summarize messages = sum(delivered) by bin(timestamp, 15m), mailbox\n| render timechart'
var bytesQuery = '${metrics}\n| summarize megabytes = sum(bytes) / 1048576.0 by bin(timestamp, 15m), mailbox\n| render timechart'
var durationQuery = '${metrics}\n| summarize runSeconds = max(runSeconds), timeBox = max(deadlineSeconds) by bin(timestamp, 15m)\n| render timechart'
var lagQuery = '${metrics}\n| summarize newestMessageAgeMinutes = max(newestMessageAgeSeconds) / 60 by bin(timestamp, 15m), mailbox\n| render timechart'
var failuresQuery = '${metrics}\n| where not(ok)\n| summarize failures = count() by bin(timestamp, 15m), mailbox, errorType\n| render columnchart'
var statusQuery = '${metrics}\n| summarize arg_max(timestamp, *) by mailbox\n| extend minutesSinceSuccess = round(secondsSinceSuccess / 60, 1)\n| extend status = case(not(ok) and consecutiveFailures >= 3, "red", isnotnull(throttledUntil) and throttledUntil > now(), "amber", not(ok) or folderErrors > 0 or isnull(secondsSinceSuccess) or secondsSinceSuccess > ${amberMinutes * 60}, "amber", "green")\n| project mailbox, status, lastRun = timestamp, delivered, minutesSinceSuccess, consecutiveFailures, errorType, folderErrors, throttledUntil\n| order by status asc, mailbox asc'
var lagAlertQuery = '${metrics}\n| summarize arg_max(timestamp, *) by mailbox\n| where isnull(secondsSinceSuccess) or secondsSinceSuccess > ${lagAlertMinutes * 60}\n| project mailbox, secondsSinceSuccess, errorType'

// What every query item of the workbook shares.
var kqlItem = {
  version: 'KqlItem/1.0'
  size: 0
  queryType: 0
  resourceType: 'microsoft.insights/components'
  timeContext: { durationMs: 86400000 }
}

var workbook = {
  version: 'Notebook/1.0'
  items: [
    {
      type: 1
      name: 'title'
      content: {
        json: '## mailferry\nPer mailbox, from the "mailbox metrics" record each run writes. Red: failing three runs in a row. Amber: failing, throttled, a folder failing, or no success for ${amberMinutes} minutes.'
      }
    }
    {
      type: 3
      name: 'status'
      content: union(kqlItem, { title: 'Mailboxes now (green, amber, red)', query: statusQuery, visualization: 'table' })
    }
    {
      type: 3
      name: 'delivered'
      content: union(kqlItem, { title: 'Messages delivered per mailbox', query: deliveredQuery, visualization: 'timechart' })
    }
    {
      type: 3
      name: 'bytes'
      content: union(kqlItem, { title: 'MB delivered per mailbox', query: bytesQuery, visualization: 'timechart' })
    }
    {
      type: 3
      name: 'lag'
      content: union(kqlItem, { title: 'Age of the newest delivered message (minutes)', query: lagQuery, visualization: 'timechart' })
    }
    {
      type: 3
      name: 'failures'
      content: union(kqlItem, { title: 'Failed polls by error type', query: failuresQuery, visualization: 'barchart' })
    }
    {
      type: 3
      name: 'duration'
      content: union(kqlItem, { title: 'Run time against the time box (seconds)', query: durationQuery, visualization: 'timechart' })
    }
  ]
  fallbackResourceIds: [appInsightsId]
}

resource dashboard 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(appInsightsId, 'mailferry-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'mailferry: mailboxes'
    category: 'workbook'
    sourceId: appInsightsId
    serializedData: string(workbook)
  }
}

resource lagAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${appInsightsName}-mailbox-lag'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'mailferry: a mailbox is falling behind'
    description: 'A mailbox has had no successful poll for ${lagAlertMinutes} minutes. Check mailferry status and its health row.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: lagAlertQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'mailbox'
              operator: 'Include'
              values: ['*']
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: empty(actionGroupId) ? [] : [actionGroupId]
    }
  }
}

output workbookId string = dashboard.id
output lagAlertName string = lagAlert.name

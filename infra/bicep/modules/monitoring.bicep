// Log Analytics, Application Insights (Entra ID ingestion only) and the alert that fires
// when one mailbox keeps failing.

param location string
param tags object = {}
param workspaceName string
param appInsightsName string

@minValue(30)
@maxValue(730)
param retentionInDays int = 30

@description('Where the alert is sent. Empty: the alert rule exists but notifies nobody.')
param alertEmail string = ''

@description('Length of one evaluation window. Keep it at least as long as the poll interval.')
@allowed(['PT5M', 'PT10M', 'PT15M', 'PT30M', 'PT45M', 'PT1H'])
param alertWindow string = 'PT15M'

@description('The alert fires when a mailbox has failed in this many consecutive windows.')
@minValue(1)
@maxValue(6)
param alertConsecutiveWindows int = 3

@description('Text every failed mailbox poll log line starts with: FAILURE_LOG_TEXT in shared/poll.py.')
param pollFailedText string = 'mailbox poll failed'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    // Telemetry is accepted only with an Entra ID token (the app's identity holds
    // Monitoring Metrics Publisher), so the connection string's key alone is useless.
    DisableLocalAuth: true
    IngestionMode: 'LogAnalytics'
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-${appInsightsName}'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'mailferry'
    enabled: true
    emailReceivers: [
      {
        name: 'operators'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// One row per failed poll. shared/poll.py logs "<text>: <address>: <ErrorType>: <message>";
// custom dimensions 'mailbox' / 'error_type', when the logging pipeline carries them, win.
var failedPollQuery = '''
traces
| where message startswith "{0}: "
| extend fields = split(substring(message, strlen("{0}: ")), ": ")
| extend dimensionMailbox = tostring(customDimensions.mailbox), dimensionError = tostring(customDimensions.error_type)
| extend mailbox = iff(isempty(dimensionMailbox), tostring(fields[0]), dimensionMailbox)
| extend errorType = iff(isempty(dimensionError), tostring(fields[1]), dimensionError)
| project timestamp, mailbox, errorType, message
'''

resource mailboxFailingAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${appInsightsName}-mailbox-failing'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'mailferry: a mailbox keeps failing'
    description: 'A mailbox logged "${pollFailedText}" in each of ${alertConsecutiveWindows} consecutive ${alertWindow} windows. Check its health row and the error type; see docs/troubleshooting.md.'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: alertWindow
    windowSize: alertWindow
    criteria: {
      allOf: [
        {
          query: format(failedPollQuery, pollFailedText)
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
            numberOfEvaluationPeriods: alertConsecutiveWindows
            minFailingPeriodsToAlert: alertConsecutiveWindows
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: empty(alertEmail) ? [] : [actionGroup.id]
    }
  }
}

output appInsightsName string = appInsights.name
output appInsightsId string = appInsights.id
output connectionString string = appInsights.properties.ConnectionString
output workspaceId string = workspace.id
output alertRuleName string = mailboxFailingAlert.name
output actionGroupId string = empty(alertEmail) ? '' : resourceId('Microsoft.Insights/actionGroups', 'ag-${appInsightsName}')

// Parameters for main.bicep. azd passes its environment to readEnvironmentVariable, so
// `azd env set MAILFERRY_MAILBOXES "..."` is all it takes; with plain `az deployment group
// create`, export the same variables or replace the calls with literal values.
using './main.bicep'

param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', 'mailferry')
param principalId = readEnvironmentVariable('AZURE_PRINCIPAL_ID', '')
param principalType = readEnvironmentVariable('AZURE_PRINCIPAL_TYPE', 'User')

param m365TenantId = readEnvironmentVariable('MAILFERRY_M365_TENANT_ID', '')
param m365ClientId = readEnvironmentVariable('MAILFERRY_M365_CLIENT_ID', '')
param m365Cloud = readEnvironmentVariable('MAILFERRY_M365_CLOUD', 'global')
param authMode = readEnvironmentVariable('MAILFERRY_AUTH_MODE', 'secret')
param mailboxes = readEnvironmentVariable('MAILFERRY_MAILBOXES', '')
param clientSecretName = readEnvironmentVariable('MAILFERRY_CLIENT_SECRET_NAME', 'mailferry-client-secret')

param pollSchedule = readEnvironmentVariable('MAILFERRY_POLL_SCHEDULE', '0 */5 * * * *')
param pollMode = readEnvironmentVariable('MAILFERRY_POLL_MODE', 'inline')
param mailContainerName = 'mail'
param checkpointTableName = 'mailferrycheckpoints'
param fanoutQueueName = 'mailferry-polls'

param alertEmail = readEnvironmentVariable('MAILFERRY_ALERT_EMAIL', '')
param alertWindow = 'PT15M'
param alertConsecutiveWindows = 3

// Parameters for main.bicep. azd passes its environment to readEnvironmentVariable, so
// `azd env set MAILFERRY_MAILBOXES "..."` is all it takes; with plain `az deployment group
// create`, export the same variables or replace the calls with literal values.
using './main.bicep'

param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', 'mailferry')
param principalId = readEnvironmentVariable('AZURE_PRINCIPAL_ID', '')
// azd passes AZURE_PRINCIPAL_ID but not its type in this mode: a pipeline sets
// AZURE_PRINCIPAL_TYPE=ServicePrincipal; empty lets Azure work the type out.
param principalType = readEnvironmentVariable('AZURE_PRINCIPAL_TYPE', '')
// Set anew by the postdown hook in azure.yaml, so `azd up` after `azd down` gets a fresh vault.
param keyVaultNameSeed = readEnvironmentVariable('MAILFERRY_KEY_VAULT_SEED', '')
param keyVaultPurgeProtection = bool(readEnvironmentVariable('MAILFERRY_KEY_VAULT_PURGE_PROTECTION', 'false'))
param pythonVersion = readEnvironmentVariable('MAILFERRY_PYTHON_VERSION', '3.11')
param maximumInstanceCount = int(readEnvironmentVariable('MAILFERRY_MAXIMUM_INSTANCE_COUNT', '40'))

param m365TenantId = readEnvironmentVariable('MAILFERRY_M365_TENANT_ID', '')
param m365ClientId = readEnvironmentVariable('MAILFERRY_M365_CLIENT_ID', '')
param m365Cloud = readEnvironmentVariable('MAILFERRY_M365_CLOUD', 'global')
param authMode = readEnvironmentVariable('MAILFERRY_AUTH_MODE', 'secret')
param mailboxes = readEnvironmentVariable('MAILFERRY_MAILBOXES', '')
param mailboxesSource = readEnvironmentVariable('MAILFERRY_MAILBOXES_SOURCE', 'setting')
param firstRun = readEnvironmentVariable('MAILFERRY_FIRST_RUN', 'all')
param afterDelivery = readEnvironmentVariable('MAILFERRY_AFTER_DELIVERY', 'keep')
param clientSecretName = readEnvironmentVariable('MAILFERRY_CLIENT_SECRET_NAME', 'mailferry-client-secret')

param pollSchedule = readEnvironmentVariable('MAILFERRY_POLL_SCHEDULE', '0 */5 * * * *')
param pollMode = readEnvironmentVariable('MAILFERRY_POLL_MODE', 'inline')
param mailContainerName = 'mail'
param checkpointTableName = 'mailferrycheckpoints'
param fanoutQueueName = 'mailferry-polls'
param messageNotices = bool(readEnvironmentVariable('MAILFERRY_MESSAGE_NOTICES', 'true'))
param summaryBlobs = bool(readEnvironmentVariable('MAILFERRY_SUMMARY_BLOBS', 'false'))
param blobEvents = readEnvironmentVariable('MAILFERRY_BLOB_EVENTS', 'storageQueue')
param blobEventsServiceBusQueueId = readEnvironmentVariable('MAILFERRY_BLOB_EVENTS_SERVICE_BUS_QUEUE_ID', '')
param blobEventsWebhookUrl = readEnvironmentVariable('MAILFERRY_BLOB_EVENTS_WEBHOOK_URL', '')

param mailCoolAfterDays = int(readEnvironmentVariable('MAILFERRY_MAIL_COOL_AFTER_DAYS', '0'))
param mailColdTier = readEnvironmentVariable('MAILFERRY_MAIL_COLD_TIER', 'Cold')
param mailColdAfterDays = int(readEnvironmentVariable('MAILFERRY_MAIL_COLD_AFTER_DAYS', '0'))
param mailDeleteAfterDays = int(readEnvironmentVariable('MAILFERRY_MAIL_DELETE_AFTER_DAYS', '0'))
param mailImmutableStorage = bool(readEnvironmentVariable('MAILFERRY_MAIL_IMMUTABLE_STORAGE', 'false'))
param mailRetentionDays = int(readEnvironmentVariable('MAILFERRY_MAIL_RETENTION_DAYS', '0'))
param mailRetentionLocked = bool(readEnvironmentVariable('MAILFERRY_MAIL_RETENTION_LOCKED', 'false'))

param alertEmail = readEnvironmentVariable('MAILFERRY_ALERT_EMAIL', '')
param alertWindow = 'PT15M'
param alertConsecutiveWindows = 3

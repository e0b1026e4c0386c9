// mailferry on Azure: a Flex Consumption Function App that runs as a user-assigned identity
// and reaches Key Vault, storage and Application Insights with Entra ID only.
// Deploy into an existing resource group: `azd up`, or `az deployment group create`
// with main.bicepparam (docs/azure.md).
targetScope = 'resourceGroup'

@description('Name of the environment (azd sets it); it seeds the unique suffix of every resource name.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Azure region of every resource.')
param location string = resourceGroup().location

@description('Object ID of whoever runs infra/tenant; gets Key Vault Secrets Officer to write the client secret. Empty: nobody.')
param principalId string = ''

@description('Kind of principal principalId is: User, Group or ServicePrincipal (a pipeline). Empty: Azure works it out, which suits a principal that already exists.')
@allowed(['', 'User', 'Group', 'ServicePrincipal'])
param principalType string = ''

@description('Any new value gives the next deployment a new Key Vault name. A deleted vault keeps its name for its retention days (for ever unpurgeable with purge protection), so `azd down` sets a new seed for the next `azd up`. Empty: the name of earlier versions of this template.')
param keyVaultNameSeed string = ''

@description('Purge protection on the Key Vault: a deleted vault and its secrets cannot be purged before their retention days are over. Irreversible once on; `azd down --purge` then leaves the vault soft-deleted.')
param keyVaultPurgeProtection bool = false

// --- Microsoft 365 side (see infra/tenant) ---------------------------------------------------

@description('Tenant that owns the mailboxes. Empty: the tenant of this subscription.')
param m365TenantId string = ''

@description('Application (client) ID of the app registration granted IMAP.AccessAsApp. Empty until infra/tenant has created it; the app then reports M365_CLIENT_ID as missing.')
param m365ClientId string = ''

@description('Microsoft 365 cloud of the mailboxes: global (also GCC), usgov (GCC High), usgovdod or china. The app derives the sign-in host, token scope and mail hosts from it.')
@allowed(['global', 'usgov', 'usgovdod', 'china'])
param m365Cloud string = 'global'

@description('How the app proves itself to Entra ID: secret (client secret in Key Vault), certificate (certificate in Key Vault) or federated (the managed identity, nothing stored).')
@allowed(['secret', 'certificate', 'federated'])
param authMode string = 'secret'

@description('Mailboxes to read, in the MAILBOXES format: "a@contoso.com, b@contoso.com:INBOX|Invoices".')
param mailboxes string = ''

@description('Name of the Key Vault secret holding the client secret\'s Value (infra/tenant writes it).')
param clientSecretName string = 'mailferry-client-secret'

@description('Name of the Key Vault certificate registered on the app registration (authMode certificate).')
param clientCertificateName string = 'mailferry-client-cert'

@description('imap or pop3: how mailboxes are read unless a MAILBOXES entry says otherwise.')
@allowed(['imap', 'pop3'])
param mailProtocol string = 'imap'

@description('How much existing mail a folder\'s first poll takes: all, new (only mail arriving from then on) or since:YYYY-MM-DD (received on or after that day, UTC). Folders already polled keep theirs.')
param firstRun string = 'all'

@description('What happens to a message once its blob is stored: keep, seen, move:<folder> or delete (POP3: keep or delete). See docs/after-delivery.md.')
param afterDelivery string = 'keep'

@description('setting (the mailboxes parameter) or table (the registry managed with `mailferry mailboxes`, for thousands of mailboxes).')
@allowed(['setting', 'table'])
param mailboxesSource string = 'setting'

// --- Behaviour -------------------------------------------------------------------------------

@description('NCRONTAB schedule of the poll (six fields, seconds first).')
param pollSchedule string = '0 */5 * * * *'

@description('inline (the timer polls every mailbox) or fanout (one queue message per mailbox, polled by queue-triggered instances).')
@allowed(['inline', 'fanout'])
param pollMode string = 'inline'

param mailContainerName string = 'mail'
param checkpointTableName string = 'mailferrycheckpoints'

@description('Queue of one message per mailbox, for fan-out across instances.')
param fanoutQueueName string = 'mailferry-polls'

@minValue(1)
@maxValue(64)
param maxConcurrentMailboxes int = 4

@minValue(1)
@maxValue(1000)
param fetchBatchSize int = 100

@minValue(1)
@maxValue(64)
param uploadConcurrency int = 16

@description('Messages above this many bytes are fetched and uploaded in pieces.')
@minValue(1048576)
@maxValue(1073741824)
param largeMessageBytes int = 16777216

@description('A run stops starting work after this many seconds; keep it below host.json functionTimeout.')
@minValue(10)
@maxValue(86400)
param pollDeadlineSeconds int = 480

@description('Seconds an IMAP or POP3 read may wait for data (also the span of the 1 KiB/s minimum pace).')
@minValue(1)
@maxValue(600)
param imapTimeoutSeconds int = 60

@description('Python of the Function App: the versions Flex Consumption offers from 3.11 on (requirements.txt pins azure-functions per version).')
@allowed(['3.11', '3.12', '3.13', '3.14'])
param pythonVersion string = '3.11'

@description('Most instances the app scales out to (per function). 1 keeps every poll on one instance.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

// --- Building on the mail: notices, summaries, Event Grid (docs/downstream.md) ----------------

@description('One JSON notice per delivered message on the queue messageQueueName (NOTIFY_QUEUE). false: none (the queue still exists).')
param messageNotices bool = true

@description('Queue of the mail account for the message notices; the app may only send to it.')
param messageQueueName string = 'mailferry-messages'

@description('Also write each message summary as a .json blob beside its .eml (SUMMARY_BLOBS).')
param summaryBlobs bool = false

@description('Where Event Grid sends a BlobCreated event for each new .eml blob: storageQueue (blobEventsQueueName, created here), serviceBusQueue (your queue, blobEventsServiceBusQueueId), webhook (blobEventsWebhookUrl) or none.')
@allowed(['storageQueue', 'serviceBusQueue', 'webhook', 'none'])
param blobEvents string = 'storageQueue'

@description('Queue of the mail account for the BlobCreated events (blobEvents storageQueue).')
param blobEventsQueueName string = 'mailferry-blob-events'

@description('Resource ID of your Service Bus queue (blobEvents serviceBusQueue); grant the output BLOB_EVENTS_PRINCIPAL_ID Azure Service Bus Data Sender on it.')
param blobEventsServiceBusQueueId string = ''

@description('Your HTTPS endpoint for the events (blobEvents webhook); it must answer Event Grid\'s validation handshake.')
param blobEventsWebhookUrl string = ''

// --- Retention of the mail: tiers, deletion, immutability (all off by default) ---------------

@description('Move message blobs to the Cool tier this many days after they were written. 0 or -1: never.')
@minValue(-1)
param mailCoolAfterDays int = 0

@description('Colder tier for mailColdAfterDays: Cold (online) or Archive (offline; reading needs hours of rehydration; LRS/GRS accounts only).')
@allowed(['Cold', 'Archive'])
param mailColdTier string = 'Cold'

@description('Move message blobs to mailColdTier this many days after they were written. 0 or -1: never.')
@minValue(-1)
param mailColdAfterDays int = 0

@description('Delete message blobs this many days after they were written. 0 or -1: never. Immutable blobs are not deleted before their retention ends.')
@minValue(-1)
param mailDeleteAfterDays int = 0

@description('Version-level immutability (WORM) support on the mail container: legal holds on single messages become possible. Needs blob versioning on the mail account; only on a new container (an existing one must be migrated first).')
param mailImmutableStorage bool = false

@description('Days each new message blob stays immutable (cannot be deleted or overwritten, even by mailferry). 0: no time-based retention. Turns on mailImmutableStorage.')
@minValue(0)
@maxValue(146000)
param mailRetentionDays int = 0

@description('true once the retention policy has been locked (irreversible, see docs/azure.md); Bicep then leaves the policy alone, since a locked policy only takes a longer period.')
param mailRetentionLocked bool = false

// --- Alerting ---------------------------------------------------------------------------------

@description('Email address that receives the "a mailbox keeps failing" alert. Empty: no notification.')
param alertEmail string = ''

@allowed(['PT5M', 'PT10M', 'PT15M', 'PT30M', 'PT45M', 'PT1H'])
param alertWindow string = 'PT15M'

@minValue(1)
@maxValue(6)
param alertConsecutiveWindows int = 3

@description('The lag alert fires when a mailbox has had no successful poll for this many minutes.')
@minValue(15)
@maxValue(10080)
param lagAlertMinutes int = 120

// -----------------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = {
  'azd-env-name': environmentName
  application: 'mailferry'
}
var functionAppName = 'func-mailferry-${resourceToken}'
var deploymentContainerName = 'app-package'
// Unchanged for deployments made before the seed existed; a new seed gives a new name.
var keyVaultToken = empty(keyVaultNameSeed) ? resourceToken : toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, keyVaultNameSeed))
var mailImmutable = mailImmutableStorage || mailRetentionDays > 0


// The one identity the app runs as: host storage, mail storage, Key Vault and telemetry.
// User-assigned, so its grants exist before the app starts and survive re-creating the app.
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-mailferry-${resourceToken}'
  location: location
  tags: tags
}

// Functions host storage (AzureWebJobsStorage) and the deployment package. Kept apart from
// the mail so the host's account-wide Blob Data Owner does not reach the mail.
module hostStorage 'modules/storage-account.bicep' = {
  name: 'host-storage'
  params: {
    name: 'stmfhost${resourceToken}'
    location: location
    tags: tags
    containers: [deploymentContainerName]
  }
}

// The mail: one blob per message, checkpoints and health rows, the fan-out queue.
module mailStorage 'modules/storage-account.bicep' = {
  name: 'mail-storage'
  params: {
    name: 'stmfmail${resourceToken}'
    location: location
    tags: tags
    containers: [mailContainerName, '${mailContainerName}-leases']
    tables: [checkpointTableName]
    queues: [fanoutQueueName, '${fanoutQueueName}-poison', messageQueueName]
    // Immutability covers the mail only: lease blobs and the checkpoint table stay writable.
    versioning: mailImmutable
    immutableContainers: mailImmutable ? [mailContainerName] : []
  }
}

module mailRetention 'modules/mail-retention.bicep' = {
  name: 'mail-retention'
  params: {
    storageAccountName: mailStorage.outputs.name
    containerName: mailContainerName
    coolAfterDays: mailCoolAfterDays
    coldTier: mailColdTier
    coldAfterDays: mailColdAfterDays
    deleteAfterDays: mailDeleteAfterDays
    retentionDays: mailRetentionDays
    retentionLocked: mailRetentionLocked
  }
}

// BlobCreated events of new message blobs, delivered with the system topic's own identity.
module blobEventsGrid 'modules/blob-events.bicep' = {
  name: 'blob-events'
  params: {
    location: location
    tags: tags
    mailStorageName: mailStorage.outputs.name
    mailContainerName: mailContainerName
    destination: blobEvents
    queueName: blobEventsQueueName
    serviceBusQueueId: blobEventsServiceBusQueueId
    webhookUrl: blobEventsWebhookUrl
  }
}

module keyVault 'modules/key-vault.bicep' = {
  name: 'key-vault'
  params: {
    name: 'kv-mf-${keyVaultToken}'
    location: location
    tags: tags
    purgeProtection: keyVaultPurgeProtection
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    workspaceName: 'log-mailferry-${resourceToken}'
    appInsightsName: 'appi-mailferry-${resourceToken}'
    alertEmail: alertEmail
    alertWindow: alertWindow
    alertConsecutiveWindows: alertConsecutiveWindows
  }
}

// The operators' workbook and the lag alert, over the per-mailbox metrics records.
module dashboard 'modules/dashboard.bicep' = {
  name: 'dashboard'
  params: {
    location: location
    tags: tags
    appInsightsId: monitoring.outputs.appInsightsId
    appInsightsName: monitoring.outputs.appInsightsName
    actionGroupId: monitoring.outputs.actionGroupId
    lagAlertMinutes: lagAlertMinutes
  }
}

module roleAssignments 'modules/role-assignments.bicep' = {
  name: 'role-assignments'
  params: {
    principalId: identity.properties.principalId
    deployerPrincipalId: principalId
    deployerPrincipalType: principalType
    keyVaultName: keyVault.outputs.name
    hostStorageName: hostStorage.outputs.name
    mailStorageName: mailStorage.outputs.name
    mailContainerName: mailContainerName
    fanoutQueueName: fanoutQueueName
    messageQueueName: messageQueueName
    appInsightsName: monitoring.outputs.appInsightsName
  }
}

// Every app setting. Host settings first, then each setting of shared/settings.py SETTINGS
// that applies on Azure (MAIL_STORAGE and CA_BUNDLE are for local runs only). The host's
// storage by service URI, built from the cloud's own storage suffix, so sovereign clouds work.
var appSettings = {
  AzureWebJobsStorage__blobServiceUri: hostStorage.outputs.blobServiceUri
  AzureWebJobsStorage__queueServiceUri: hostStorage.outputs.queueServiceUri
  AzureWebJobsStorage__tableServiceUri: hostStorage.outputs.tableServiceUri
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.properties.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'

  M365_TENANT_ID: empty(m365TenantId) ? tenant().tenantId : m365TenantId
  M365_CLIENT_ID: m365ClientId
  M365_CLOUD: m365Cloud
  AUTH_MODE: authMode
  KEY_VAULT_URL: keyVault.outputs.uri
  CLIENT_SECRET_NAME: clientSecretName
  CLIENT_CERTIFICATE_NAME: clientCertificateName
  CLIENT_CERTIFICATE_SEND_CHAIN: 'false'
  KEY_VAULT_VERIFY_CHALLENGE_RESOURCE: 'true'
  MANAGED_IDENTITY_CLIENT_ID: identity.properties.clientId
  // Empty: the app takes these from M365_CLOUD. Set one only to override that cloud's value.
  FEDERATED_TOKEN_AUDIENCE: ''
  AUTHORITY_HOST: ''
  TOKEN_SCOPE: ''
  IMAP_HOST: ''
  POP3_HOST: ''
  MAILBOXES: mailboxes
  MAIL_PROTOCOL: mailProtocol
  FIRST_RUN: firstRun
  AFTER_DELIVERY: afterDelivery
  MAILBOXES_SOURCE: mailboxesSource
  POLL_SCHEDULE: pollSchedule
  POLL_MODE: pollMode
  POLL_QUEUE: fanoutQueueName
  NOTIFY_QUEUE: messageNotices ? messageQueueName : ''
  SUMMARY_BLOBS: string(summaryBlobs)
  BLOB_CONTAINER: mailContainerName
  CHECKPOINT_TABLE: checkpointTableName
  MAIL_STORAGE__blobServiceUri: mailStorage.outputs.blobServiceUri
  MAIL_STORAGE__tableServiceUri: mailStorage.outputs.tableServiceUri
  MAIL_STORAGE__queueServiceUri: mailStorage.outputs.queueServiceUri
  MAIL_STORAGE__credential: 'managedidentity'
  MAIL_STORAGE__clientId: identity.properties.clientId
  IMAP_PORT: '993'
  IMAP_SECURITY: 'tls'
  POP3_PORT: '995'
  POP3_SECURITY: 'tls'
  MAX_CONCURRENT_MAILBOXES: string(maxConcurrentMailboxes)
  FETCH_BATCH_SIZE: string(fetchBatchSize)
  UPLOAD_CONCURRENCY: string(uploadConcurrency)
  LARGE_MESSAGE_BYTES: string(largeMessageBytes)
  POLL_DEADLINE_SECONDS: string(pollDeadlineSeconds)
  IMAP_TIMEOUT_SECONDS: string(imapTimeoutSeconds)
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  params: {
    name: functionAppName
    planName: 'plan-mailferry-${resourceToken}'
    location: location
    tags: tags
    // azd finds the app by this tag, which must be on the site alone.
    azdServiceName: 'mailferry'
    identityId: identity.id
    hostBlobServiceUri: hostStorage.outputs.blobServiceUri
    deploymentContainerName: deploymentContainerName
    appSettings: appSettings
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
  }
  // The host reads its storage as soon as it starts: grant first.
  dependsOn: [
    roleAssignments
  ]
}

// Outputs: azd stores them in its environment (`azd env get-values`); docs/azure.md's next steps use them.
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output KEY_VAULT_URL string = keyVault.outputs.uri
output CLIENT_SECRET_NAME string = clientSecretName
output M365_TENANT_ID string = empty(m365TenantId) ? tenant().tenantId : m365TenantId
// Issuer tenant of the identity's tokens: a federated credential on the app registration trusts
// https://login.microsoftonline.com/<AZURE_TENANT_ID>/v2.0 with subject MANAGED_IDENTITY_PRINCIPAL_ID.
output AZURE_TENANT_ID string = subscription().tenantId
output MANAGED_IDENTITY_CLIENT_ID string = identity.properties.clientId
output MANAGED_IDENTITY_PRINCIPAL_ID string = identity.properties.principalId
output MAIL_STORAGE_ACCOUNT_NAME string = mailStorage.outputs.name
output MAIL_BLOB_CONTAINER string = mailContainerName
output FANOUT_QUEUE_NAME string = fanoutQueueName
output MESSAGE_QUEUE_NAME string = messageNotices ? messageQueueName : ''
output BLOB_EVENTS_QUEUE_NAME string = blobEventsGrid.outputs.queueName
// The identity Event Grid delivers with: grant it Azure Service Bus Data Sender on your queue.
output BLOB_EVENTS_PRINCIPAL_ID string = blobEventsGrid.outputs.principalId
output HOST_STORAGE_ACCOUNT_NAME string = hostStorage.outputs.name
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.appInsightsName
output ALERT_RULE_NAME string = monitoring.outputs.alertRuleName

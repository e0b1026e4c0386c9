// Every Azure role the app's identity holds, each on the narrowest resource that works.
// Names are guid(scope, principal, role), so a redeploy finds the same assignment.

@description('Principal (object) ID of the user-assigned identity the Function App runs as.')
param principalId string

@description('Object ID of the person or pipeline that runs infra/tenant (writes the client secret). Empty: none.')
param deployerPrincipalId string = ''

@description('User, Group or ServicePrincipal. Empty: left out, and Azure looks the principal up.')
@allowed(['', 'User', 'Group', 'ServicePrincipal'])
param deployerPrincipalType string = ''

param keyVaultName string
param hostStorageName string
param mailStorageName string
param mailContainerName string
param fanoutQueueName string
param messageQueueName string
param appInsightsName string

// Built-in role definition IDs (identical in every subscription and cloud).
var roles = {
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageQueueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageName
}

resource mailStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: mailStorageName
}

resource mailBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: mailStorage
  name: 'default'
}

resource mailContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: mailBlobService
  name: mailContainerName
}

resource leaseContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: mailBlobService
  name: '${mailContainerName}-leases'
}

resource mailTableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' existing = {
  parent: mailStorage
  name: 'default'
}

resource mailQueueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: mailStorage
  name: 'default'
}

resource fanoutQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: mailQueueService
  name: fanoutQueueName
}

// The Functions host moves a message here after it failed maxDequeueCount times.
resource fanoutPoisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: mailQueueService
  name: '${fanoutQueueName}-poison'
}

// One JSON notice per delivered message (NOTIFY_QUEUE): the app sends, consumers receive.
resource messageQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: mailQueueService
  name: messageQueueName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

// --- The app: read the client secret (KEY_VAULT_URL, CLIENT_SECRET_NAME).
resource appKeyVaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'mailferry reads its client secret'
  }
}

// --- The Functions host: AzureWebJobsStorage (timer leases, keys, deployment package).
resource hostBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, principalId, roles.storageBlobDataOwner)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Functions host storage: leases, keys and the deployment package'
  }
}

resource hostQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, principalId, roles.storageQueueDataContributor)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Functions host storage: host queues'
  }
}

resource hostTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, principalId, roles.storageTableDataContributor)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Functions host storage: host tables'
  }
}

// --- Fan-out: one lease blob per mailbox in '<BLOB_CONTAINER>-leases', so a mailbox is polled once at a time.
resource leaseBlobDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(leaseContainer.id, principalId, roles.storageBlobDataContributor)
  scope: leaseContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'mailferry takes a per-mailbox lease in fan-out mode'
  }
}

// --- The app: one blob per message (BLOB_CONTAINER), create, read and list; nothing else.
resource mailBlobDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(mailContainer.id, principalId, roles.storageBlobDataContributor)
  scope: mailContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'mailferry writes one blob per message'
  }
}

// --- The app: checkpoints and health rows (CHECKPOINT_TABLE). On the mail account's table
// service, not the table: the app creates its table when missing at each start, and Create
// Table names the table in its body, not in the URL a table-scoped grant is checked against.
// The mail account holds no other table.
resource checkpointTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(mailTableService.id, principalId, roles.storageTableDataContributor)
  scope: mailTableService
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'mailferry checkpoints and health rows'
  }
}

// --- The app and its queue trigger: one message per mailbox (fan-out), and its poison queue.
resource fanoutQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(fanoutQueue.id, principalId, roles.storageQueueDataContributor)
  scope: fanoutQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'mailferry fan-out: send and receive one message per mailbox'
  }
}

resource fanoutPoisonQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(fanoutPoisonQueue.id, principalId, roles.storageQueueDataContributor)
  scope: fanoutPoisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'mailferry fan-out: poison messages'
  }
}

// --- The app: a notice per delivered message (NOTIFY_QUEUE); it only sends, never reads.
resource messageQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(messageQueue.id, principalId, roles.storageQueueDataMessageSender)
  scope: messageQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'mailferry sends one notice per delivered message'
  }
}

// --- The host's telemetry, accepted only with an Entra ID token (DisableLocalAuth).
resource telemetryMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Functions host sends telemetry with Entra ID'
  }
}

// --- The operator who runs infra/tenant: writes (and rotates) the client secret.
resource deployerKeyVaultSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(vault.id, deployerPrincipalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: deployerPrincipalId
    // A wrong type is refused (a pipeline is no User); without one Azure resolves it.
    principalType: empty(deployerPrincipalType) ? null : deployerPrincipalType
    description: 'Operator writes the mailferry client secret (infra/tenant)'
  }
}

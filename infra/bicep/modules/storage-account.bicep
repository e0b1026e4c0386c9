// One storage account, locked to Entra ID (no shared keys), with the containers, tables and
// queues named by the caller. Used twice: once for the Functions host, once for the mail.

@description('Storage account name: 3 to 24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param name string

param location string
param tags object = {}

@description('Blob containers to create.')
param containers string[] = []

@description('Tables to create.')
param tables string[] = []

@description('Queues to create.')
param queues string[] = []

@description('Days a deleted or overwritten blob, or a deleted container, can be restored.')
@minValue(1)
@maxValue(365)
param softDeleteDays int = 7

@description('Keep a version of each overwritten or deleted blob: needed for version-level immutability.')
param versioning bool = false

@description('Which of containers get version-level immutability support: legal holds and time-based retention on each blob version. Set when a container is created; an existing one must be migrated.')
param immutableContainers string[] = []

@allowed(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_GZRS'])
param skuName string = 'Standard_LRS'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
    // Entra ID only: no account keys, no SAS signed with them, nothing to leak or rotate.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    isVersioningEnabled: versioning
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
  }
}

resource blobContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for container in containers: {
    parent: blobService
    name: container
    properties: {
      publicAccess: 'None'
      immutableStorageWithVersioning: contains(immutableContainers, container) ? { enabled: true } : null
    }
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource storageTables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for table in tables: {
    parent: tableService
    name: table
  }
]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource storageQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queue in queues: {
    parent: queueService
    name: queue
  }
]

output name string = account.name
output id string = account.id
// Built from the cloud's own suffix, without the trailing slash primaryEndpoints carry.
output blobServiceUri string = 'https://${account.name}.blob.${environment().suffixes.storage}'
output tableServiceUri string = 'https://${account.name}.table.${environment().suffixes.storage}'
output queueServiceUri string = 'https://${account.name}.queue.${environment().suffixes.storage}'

// How long the mail is kept and where: lifecycle tiers and deletion of the message blobs, and
// the default time-based retention of each message's blob version when the mail container is
// immutable. Every option is off by default; the lease container and the checkpoint table are
// never touched.

param storageAccountName string
param containerName string

@description('Days after writing to move a message to Cool; 0 or less: never.')
param coolAfterDays int = 0

@allowed(['Cold', 'Archive'])
param coldTier string = 'Cold'

@description('Days after writing to move a message to coldTier; 0 or less: never.')
param coldAfterDays int = 0

@description('Days after writing to delete a message (and any older version of it); 0 or less: never.')
param deleteAfterDays int = 0

@description('Days a new message version stays immutable; 0: no time-based retention policy.')
param retentionDays int = 0

@description('The policy has been locked: it only accepts a longer period, so Bicep leaves it alone.')
param retentionLocked bool = false

// The mail is written once and never modified, so days since modification are days since delivery.
var coldAction = coldTier == 'Archive' ? 'tierToArchive' : 'tierToCold'
var coolActions = coolAfterDays > 0 ? { tierToCool: { daysAfterModificationGreaterThan: coolAfterDays } } : {}
var coldActions = coldAfterDays > 0 ? { '${coldAction}': { daysAfterModificationGreaterThan: coldAfterDays } } : {}
var deleteActions = deleteAfterDays > 0 ? { delete: { daysAfterModificationGreaterThan: deleteAfterDays } } : {}
var tierActions = union(coolActions, coldActions, deleteActions)
// With versioning on (immutability), a deleted message would otherwise live on as a version.
var versionActions = deleteAfterDays > 0 ? { version: { delete: { daysAfterCreationGreaterThan: deleteAfterDays } } } : {}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: containerName
}

// One policy per account. Turning every option off again leaves an earlier policy in place:
// delete it with `az storage account management-policy delete`.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = if (!empty(tierActions)) {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          enabled: true
          name: 'mail-lifecycle'
          type: 'Lifecycle'
          definition: {
            // The slash keeps '<container>-leases' out.
            filters: {
              blobTypes: ['blockBlob']
              prefixMatch: ['${containerName}/']
            }
            actions: union({ baseBlob: tierActions }, versionActions)
          }
        }
      ]
    }
  }
}

// The container's default policy, applied to every new blob version (version-level WORM).
resource retention 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = if (retentionDays > 0 && !retentionLocked) {
  parent: container
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: retentionDays
    allowProtectedAppendWrites: false
  }
}

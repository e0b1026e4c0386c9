// The vault that holds the app registration's client secret. Access is Azure RBAC only
// (no access policies); the secret itself is written by infra/tenant, never by Bicep.

@description('Vault name: 3 to 24 letters, digits and dashes, globally unique.')
@minLength(3)
@maxLength(24)
param name string

param location string
param tags object = {}

@description('Days a deleted secret or vault can be recovered (7 to 90).')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

@description('Purge protection: a deleted vault cannot be purged before its retention days are over. Irreversible.')
param purgeProtection bool = false

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    // Azure accepts only true here and cannot turn it off again: null leaves a vault as it is,
    // so a vault made with purge protection by an earlier deployment keeps it.
    enablePurgeProtection: purgeProtection ? true : null
    enabledForDeployment: false
    enabledForTemplateDeployment: false
    enabledForDiskEncryption: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri

// The Function App on the Flex Consumption plan (Linux), running as the user-assigned
// identity, with its code package in a blob container reached through that identity.

param name string
param planName string
param location string
param tags object = {}

@description('Value of the azd-service-name tag, on the site only: azd refuses two resources with it.')
param azdServiceName string

@description('Resource ID of the user-assigned managed identity the app runs as.')
param identityId string

@description('Blob endpoint of the host storage account, without a trailing slash.')
param hostBlobServiceUri string

@description('Container in the host storage account that receives the deployment package.')
param deploymentContainerName string

@description('Every app setting, host and app alike. The whole set is replaced on each deployment.')
param appSettings object

@description('The Python versions Flex Consumption offers from 3.11 on; 3.10 lacks datetime.UTC, which the app uses.')
@allowed(['3.11', '3.12', '3.13', '3.14'])
param pythonVersion string = '3.11'

@description('Upper bound on instances per function (Flex Consumption accepts 1 to 1000).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': azdServiceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostBlobServiceUri}/${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      // Flex takes the language from here; FUNCTIONS_WORKER_RUNTIME must not be an app setting.
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
    }
  }

  resource settings 'config' = {
    name: 'appsettings'
    properties: appSettings
  }
}

// No publishing passwords: azd and Core Tools deploy with the operator's Entra ID token.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName

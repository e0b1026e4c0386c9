// Event Grid on the mail account: a BlobCreated event for each new message blob (.eml in the
// mail container only: lease blobs and .json summaries never match), delivered with the system
// topic's own identity to a queue of the mail account (created here), to your Service Bus
// queue or to your webhook. Events Event Grid gives up on land in a dead-letter container.
// The system topic's identity holds Storage Queue Data Message Sender on that queue alone and
// Storage Blob Data Contributor on the dead-letter container alone.

param location string
param tags object = {}
param mailStorageName string
param mailContainerName string

@description('storageQueue, serviceBusQueue, webhook, or none (no Event Grid resources).')
@allowed(['storageQueue', 'serviceBusQueue', 'webhook', 'none'])
param destination string = 'storageQueue'

@description('Queue of the mail account that receives the events (destination storageQueue).')
param queueName string = 'mailferry-blob-events'

@description('Resource ID of a Service Bus queue (destination serviceBusQueue); grant the system topic identity Azure Service Bus Data Sender on it.')
param serviceBusQueueId string = ''

@description('HTTPS endpoint (destination webhook); it must answer Event Grid\'s validation handshake.')
param webhookUrl string = ''

@description('Container of the mail account for events that could not be delivered.')
param deadLetterContainerName string = 'mailferry-blob-events-dead'

// Built-in role definition IDs (identical in every subscription and cloud).
var roles = {
  storageQueueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
}
var enabled = destination != 'none'
var toQueue = destination == 'storageQueue'
var topicIdentity = {
  type: 'SystemAssigned'
}
resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: mailStorageName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

var destinations = {
  storageQueue: {
    endpointType: 'StorageQueue'
    properties: {
      resourceId: account.id
      queueName: queueName
    }
  }
  serviceBusQueue: {
    endpointType: 'ServiceBusQueue'
    properties: {
      resourceId: serviceBusQueueId
    }
  }
  webhook: {
    endpointType: 'WebHook'
    properties: {
      endpointUrl: webhookUrl
    }
  }
  none: null
}

var blobCreatedBase = {
  eventDeliverySchema: 'EventGridSchema'
  filter: {
    includedEventTypes: [
      'Microsoft.Storage.BlobCreated'
    ]
    // Message blobs only: the lease container's names start '<container>-leases/', and the
    // .json summaries beside the messages end otherwise.
    subjectBeginsWith: '/blobServices/default/containers/${mailContainerName}/blobs/'
    subjectEndsWith: '.eml'
  }
  retryPolicy: {
    maxDeliveryAttempts: 30
    eventTimeToLiveInMinutes: 1440
  }
  deadLetterWithResourceIdentity: {
    identity: topicIdentity
    deadLetterDestination: {
      endpointType: 'StorageBlob'
      properties: {
        resourceId: account.id
        blobContainerName: deadLetterContainerName
      }
    }
  }
}

resource eventsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = if (toQueue) {
  parent: queueService
  name: queueName
}

resource deadLetters 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (enabled) {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (enabled) {
  name: 'evgt-${mailStorageName}'
  location: location
  tags: tags
  identity: topicIdentity
  properties: {
    source: account.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

// Named from scope, topic and role: the topic's principal is only known once it exists.
resource topicQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (toQueue) {
  name: guid(eventsQueue.id, systemTopic.id, roles.storageQueueDataMessageSender)
  scope: eventsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageSender)
    principalId: systemTopic.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'Event Grid delivers BlobCreated events of new mail'
  }
}

resource topicDeadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enabled) {
  name: guid(deadLetters.id, systemTopic.id, roles.storageBlobDataContributor)
  scope: deadLetters
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: systemTopic.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'Event Grid dead-letters BlobCreated events it could not deliver'
  }
}

resource blobCreated 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (enabled) {
  parent: systemTopic
  name: 'mail-blob-created'
  // A webhook proves itself with Event Grid's validation handshake; the others trust the identity.
  properties: union(blobCreatedBase, destination == 'webhook' ? {
    destination: destinations.webhook
  } : {
    deliveryWithResourceIdentity: {
      identity: topicIdentity
      destination: destinations[destination]
    }
  })
  // Delivery with the identity is checked when the subscription is made: grant first.
  dependsOn: [
    topicQueueSender
    topicDeadLetterWriter
  ]
}

output systemTopicName string = enabled ? systemTopic.name : ''
output principalId string = enabled ? systemTopic.identity.principalId : ''
output queueName string = toQueue ? queueName : ''

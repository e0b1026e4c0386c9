"""What the deployment gives consumers: the notice queue, and Event Grid's BlobCreated events.

main.bicep is evaluated (tests/bicep_evaluator.py) with azd's parameters, so these check the
resources Azure would be sent: which blobs raise an event, where it goes, with which identity,
and that each identity holds only the role it needs, on the one resource it needs it on.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.naming import blob_name, lease_blob_name, lease_container_name, pop3_blob_name
from shared.notice_document import summary_blob_name
from shared.settings import Settings
from tests.bicep_evaluator import (
    BicepFile,
    Deployment,
    InvalidParameter,
    Opaque,
    ResourceRef,
    _named,
    _property,
    _text,
)
from tests.test_infra_deployment import BICEP, app_settings, azd

_TOPIC = "Microsoft.EventGrid/systemTopics"
_SUBSCRIPTION = "Microsoft.EventGrid/systemTopics/eventSubscriptions"
_QUEUE = "Microsoft.Storage/storageAccounts/queueServices/queues"
_CONTAINER = "Microsoft.Storage/storageAccounts/blobServices/containers"
_ROLE = "Microsoft.Authorization/roleAssignments"
SENDER = "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a"  # Storage Queue Data Message Sender
BLOB_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
APP = "<identity.properties.principalId>"
TOPIC = "<systemTopic.identity.principalId>"


def account(deployment: Deployment) -> str:
    return str(deployment.outputs["MAIL_STORAGE_ACCOUNT_NAME"])


def grants(deployment: Deployment, principal: str) -> set[tuple[str, str, str]]:
    """(scope type, scope name, role ID) of every role assignment to ``principal``."""
    found = set()
    for role in deployment.of_type(_ROLE):
        properties = role.body["properties"]
        if properties["principalId"] == principal:
            scope = role.body["scope"]
            assert isinstance(scope, ResourceRef)
            found.add((scope.type, str(scope.name), properties["roleDefinitionId"].rsplit("/", 1)[1]))
    return found


def subscription(deployment: Deployment) -> dict[str, Any]:
    properties = deployment.one(_SUBSCRIPTION).body["properties"]
    assert isinstance(properties, dict)
    return properties


def raises_event(properties: dict[str, Any], container: str, name: str) -> bool:
    """Whether a new blob matches the subscription's filter, as Event Grid matches subjects."""
    subject = f"/blobServices/default/containers/{container}/blobs/{name}"
    found = properties["filter"]
    return (subject.startswith(found["subjectBeginsWith"]) and subject.endswith(found["subjectEndsWith"])
            and found["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"])


def test_the_notice_queue_is_on_by_default_and_the_app_may_only_send_to_it():
    deployment = azd()
    settings = app_settings(deployment)
    queue = settings["NOTIFY_QUEUE"]
    assert queue == "mailferry-messages" and settings["SUMMARY_BLOBS"] == "false"
    assert f"{account(deployment)}/default/{queue}" in {r.name for r in deployment.of_type(_QUEUE)}
    on_queue = {g for g in grants(deployment, APP) if g[1].endswith(f"/{queue}")}
    assert on_queue == {(_QUEUE, f"{account(deployment)}/default/{queue}", SENDER)}
    # The settings the app would read there are valid, notices included.
    env = {k: str(v) for k, v in settings.items() if not isinstance(v, Opaque)}
    env |= {"M365_CLIENT_ID": "11111111-1111-1111-1111-111111111111", "M365_TENANT_ID": "00000000-0000-0000-0000-000000000000",
            "MAILBOXES": "ops@contoso.com", "MAIL_STORAGE__blobServiceUri": "https://a.blob.core.windows.net",
            "MAIL_STORAGE__tableServiceUri": "https://a.table.core.windows.net",
            "MAIL_STORAGE__queueServiceUri": "https://a.queue.core.windows.net",
            "KEY_VAULT_URL": "https://kv.vault.azure.net/", "MANAGED_IDENTITY_CLIENT_ID": "22222222-2222-2222-2222-222222222222",
            "MAIL_STORAGE__clientId": "22222222-2222-2222-2222-222222222222"}
    assert Settings.from_mapping(env).notify_queue == queue


def test_notices_and_summary_blobs_follow_their_azd_settings():
    off = app_settings(azd({"MAILFERRY_MESSAGE_NOTICES": "false", "MAILFERRY_SUMMARY_BLOBS": "true"}))
    assert off["NOTIFY_QUEUE"] == "" and off["SUMMARY_BLOBS"] == "true"
    with pytest.raises(InvalidParameter):
        azd({"MAILFERRY_SUMMARY_BLOBS": "maybe"})


def test_event_grid_raises_an_event_for_message_blobs_only():
    deployment = azd()
    topic = deployment.one(_TOPIC)
    assert topic.body["properties"] == {"source": f"<Microsoft.Storage/storageAccounts/{account(deployment)}>",
                                        "topicType": "Microsoft.Storage.StorageAccounts"}
    assert topic.body["identity"] == {"type": "SystemAssigned"}
    properties = subscription(deployment)
    container = str(deployment.outputs["MAIL_BLOB_CONTAINER"])
    message = blob_name("ops@contoso.com", "INBOX", 7, 42)
    assert raises_event(properties, container, message)
    assert raises_event(properties, container, pop3_blob_name("ops@contoso.com", "AAQk.eml"))
    assert not raises_event(properties, container, summary_blob_name(message))
    assert not raises_event(properties, lease_container_name(container), lease_blob_name("ops@contoso.com"))
    assert not raises_event(properties, lease_container_name(container), message)
    assert not raises_event(properties, "mailferry-blob-events-dead", message)


def test_events_reach_a_queue_of_the_mail_account_with_the_topics_own_identity():
    deployment = azd()
    properties = subscription(deployment)
    mail = account(deployment)
    delivery = properties["deliveryWithResourceIdentity"]
    assert "destination" not in properties and delivery["identity"] == {"type": "SystemAssigned"}
    destination = delivery["destination"]
    assert destination == {"endpointType": "StorageQueue", "properties": {
        "resourceId": f"<Microsoft.Storage/storageAccounts/{mail}>", "queueName": "mailferry-blob-events"}}
    assert deployment.outputs["BLOB_EVENTS_QUEUE_NAME"] == "mailferry-blob-events"
    assert f"{mail}/default/mailferry-blob-events" in {r.name for r in deployment.of_type(_QUEUE)}
    dead = properties["deadLetterWithResourceIdentity"]
    assert dead["identity"] == {"type": "SystemAssigned"}
    assert dead["deadLetterDestination"]["properties"]["blobContainerName"] == "mailferry-blob-events-dead"
    assert f"{mail}/default/mailferry-blob-events-dead" in {r.name for r in deployment.of_type(_CONTAINER)}
    # The topic may send to its queue and write dead letters, and nothing else anywhere.
    assert grants(deployment, TOPIC) == {
        (_QUEUE, f"{mail}/default/mailferry-blob-events", SENDER),
        (_CONTAINER, f"{mail}/default/mailferry-blob-events-dead", BLOB_CONTRIBUTOR),
    }
    # And the app holds no role on the events or the dead letters.
    assert not {g for g in grants(deployment, APP) if "blob-events" in g[1]}


def test_events_can_go_to_your_service_bus_queue_instead():
    queue_id = ("/subscriptions/s/resourceGroups/rg/providers/Microsoft.ServiceBus/namespaces/sb/queues/mail")
    deployment = azd({"MAILFERRY_BLOB_EVENTS": "serviceBusQueue",
                      "MAILFERRY_BLOB_EVENTS_SERVICE_BUS_QUEUE_ID": queue_id})
    delivery = subscription(deployment)["deliveryWithResourceIdentity"]
    assert delivery["destination"] == {"endpointType": "ServiceBusQueue", "properties": {"resourceId": queue_id}}
    assert not any(r.name.endswith("/mailferry-blob-events") for r in deployment.of_type(_QUEUE))
    assert grants(deployment, TOPIC) == {(_CONTAINER, f"{account(deployment)}/default/mailferry-blob-events-dead",
                                          BLOB_CONTRIBUTOR)}
    assert deployment.outputs["BLOB_EVENTS_PRINCIPAL_ID"] == TOPIC  # to grant on your queue


def test_events_can_go_to_your_webhook_instead():
    deployment = azd({"MAILFERRY_BLOB_EVENTS": "webhook",
                      "MAILFERRY_BLOB_EVENTS_WEBHOOK_URL": "https://hooks.fabrikam.example/mail"})
    properties = subscription(deployment)
    assert properties["destination"] == {"endpointType": "WebHook",
                                         "properties": {"endpointUrl": "https://hooks.fabrikam.example/mail"}}
    assert "deliveryWithResourceIdentity" not in properties


def test_no_event_grid_at_all_when_turned_off():
    deployment = azd({"MAILFERRY_BLOB_EVENTS": "none"})
    assert deployment.of_type(_TOPIC) == [] and deployment.of_type(_SUBSCRIPTION) == []
    assert grants(deployment, TOPIC) == set()
    assert deployment.outputs["BLOB_EVENTS_PRINCIPAL_ID"] == ""
    with pytest.raises(InvalidParameter):
        azd({"MAILFERRY_BLOB_EVENTS": "eventHub"})


def test_the_subscription_is_made_after_the_topic_may_deliver():
    """Delivery with an identity is checked when the subscription is created: roles first."""
    module = BicepFile(BICEP / "modules" / "blob-events.bicep")
    [node] = [n for _, symbol, n in module.declarations if symbol == "blobCreated"]
    condition, body = _named(_named(node)[-1])
    depends = {_text(n) for n in _named(_property(body, "dependsOn"))}
    assert depends == {"topicQueueSender", "topicDeadLetterWriter"}

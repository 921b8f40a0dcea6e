"""The audit trail: recording, and that nothing can change or delete it."""

import pytest
from django.contrib.auth.models import Group
from django.db import transaction
from django.test import Client
from django.urls import reverse

from tests.fixtures_web import NOW, frozen_now_fixture  # noqa: F401
from workflow import audit
from workflow.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(name="event")
def event_fixture(frozen_now):
    return audit.record(audit.COMMAND_LINE, "watchlist_added", user_ids=["alice"])


@pytest.fixture(name="admin_client")
def admin_client_fixture(django_user_model, frozen_now):
    admin = django_user_model.objects.create_superuser("root", password="unused")
    client = Client()
    client.force_login(admin)
    return client


# Recording


def test_record_by_user_keeps_user_and_name(django_user_model, frozen_now):
    user = django_user_model.objects.create_user("carol")

    event = audit.record(user, "poll_requested", "alice", result="queued")

    assert event.actor == user
    assert event.actor_label == "carol"
    assert event.occurred_at == NOW
    assert event.target == "alice"
    assert event.details == {"result": "queued"}


def test_record_by_worker_has_no_user(frozen_now):
    event = audit.record(audit.WORKER, "retention_applied")

    assert event.actor is None
    assert event.actor_label == "worker"


def test_deleting_account_keeps_its_events(django_user_model, frozen_now):
    user = django_user_model.objects.create_user("carol")
    audit.record(user, "polling_resumed")

    user.delete()

    event = AuditEvent.objects.get()
    assert event.actor is None
    assert event.actor_label == "carol"


# Immutability


def test_saving_existing_event_raises(event):
    event.action = "something_else"

    with pytest.raises(PermissionError):
        event.save()

    assert AuditEvent.objects.get().action == "watchlist_added"


def test_deleting_event_raises(event):
    with pytest.raises(PermissionError):
        event.delete()

    assert AuditEvent.objects.count() == 1


def test_queryset_update_raises(event):
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(action="changed")

    assert AuditEvent.objects.get().action == "watchlist_added"


def test_queryset_delete_raises(event):
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()

    assert AuditEvent.objects.count() == 1


def test_bulk_update_raises(event):
    event.action = "changed"

    # bulk_update's own atomic block has no savepoint: give it one, so the
    # test's transaction stays usable after the error.
    with pytest.raises(PermissionError), transaction.atomic():
        AuditEvent.objects.bulk_update([event], ["action"])

    assert AuditEvent.objects.get().action == "watchlist_added"


# Admin


def test_admin_lists_events(admin_client, event):
    response = admin_client.get(reverse("admin:workflow_auditevent_changelist"))

    assert response.status_code == 200
    assert b"watchlist_added" in response.content


def test_admin_shows_event_read_only(admin_client, event):
    url = reverse("admin:workflow_auditevent_change", args=[event.pk])

    response = admin_client.get(url)

    assert response.status_code == 200
    assert b'name="_save"' not in response.content
    assert b"Delete" not in response.content


def test_admin_cannot_add(admin_client):
    response = admin_client.post(
        reverse("admin:workflow_auditevent_add"),
        {"actor_label": "x", "action": "forged", "occurred_at": "2026-01-01"},
    )

    assert response.status_code == 403
    assert not AuditEvent.objects.exists()


def test_admin_cannot_change(admin_client, event):
    url = reverse("admin:workflow_auditevent_change", args=[event.pk])

    response = admin_client.post(url, {"action": "forged", "actor_label": "x"})

    assert response.status_code == 403
    assert AuditEvent.objects.get().action == "watchlist_added"


def test_admin_cannot_delete(admin_client, event):
    url = reverse("admin:workflow_auditevent_delete", args=[event.pk])

    response = admin_client.post(url, {"post": "yes"})

    assert response.status_code == 403
    assert AuditEvent.objects.count() == 1


def test_admin_has_no_bulk_delete_action(admin_client, event):
    response = admin_client.post(
        reverse("admin:workflow_auditevent_changelist"),
        {"action": "delete_selected", "_selected_action": [event.pk]},
    )

    assert AuditEvent.objects.count() == 1
    assert b"delete_selected" not in response.content


def test_analyst_group_cannot_change_events_in_admin():
    analysts = Group.objects.get(name="analysts")

    codenames = set(analysts.permissions.values_list("codename", flat=True))

    assert codenames == {"act", "export"}

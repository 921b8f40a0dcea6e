from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils.html import escape
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from alerts.models import Alert, AlertDelivery, AlertRule, RuleKind, WebhookEndpoint
from alerts.rules import dedupe_key
from roundtable_sync.models import WatchedUser
from tests.fixtures_web import (  # noqa: F401
    NOW,
    analyst_client_fixture,
    analyst_fixture,
    anonymous_client_fixture,
    frozen_now_fixture,
)
from workflow.models import AuditEvent

pytestmark = pytest.mark.django_db

INBOX = reverse("alerts:inbox")
HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "=cmd|' /C calc'!A0",
]


@pytest.fixture(autouse=True)
def analyst_role(analyst):
    Group.objects.get(name="analysts").user_set.add(analyst)


@pytest.fixture
def viewer_client(django_user_model, frozen_now):
    viewer = django_user_model.objects.create_user("viewer", password="unused")
    Group.objects.get(name="viewers").user_set.add(viewer)
    client = Client()
    client.force_login(viewer)
    return client


@pytest.fixture
def endpoint():
    return WebhookEndpoint.objects.create(
        name="SIEM", url="https://8.8.8.8/hook", secret="s" * 64, created_at=NOW
    )


def make_alert(number=0, session_id="s1", user_id="alice", read=False, **fields):
    rule = AlertRule.objects.get(kind=fields.pop("kind", RuleKind.BLOCK_BAND))
    return Alert.objects.create(
        rule=rule,
        kind=rule.kind,
        dedupe_key=dedupe_key("test", number),
        user_id=user_id,
        session_id=session_id,
        title=fields.pop("title", f"{user_id}: session {session_id} alert {number}"),
        details=fields.pop(
            "details",
            {
                "score": 85,
                "band": "block",
                "recommended_action": "Auto-reject or high-priority review",
                "checks_detected": ["bot", "vpn"],
            },
        ),
        created_at=NOW - timedelta(minutes=number),
        read_at=NOW if read else None,
        **fields,
    )


def urls(endpoint_pk=1, rule_pk=1, alert_pk=1):
    return {
        "inbox": ("get", reverse("alerts:inbox")),
        "mark_read": ("post", reverse("alerts:mark_read", args=[alert_pk])),
        "mark_all_read": ("post", reverse("alerts:mark_all_read")),
        "rules": ("get", reverse("alerts:rules")),
        "rule_edit": ("get", reverse("alerts:rule_edit", args=[rule_pk])),
        "rule_save": ("post", reverse("alerts:rule_edit", args=[rule_pk])),
        "webhooks": ("get", reverse("alerts:webhooks")),
        "webhook_add": ("get", reverse("alerts:webhook_add")),
        "webhook_create": ("post", reverse("alerts:webhook_add")),
        "webhook_detail": ("get", reverse("alerts:webhook_detail", args=[endpoint_pk])),
        "webhook_edit": ("get", reverse("alerts:webhook_edit", args=[endpoint_pk])),
        "webhook_save": ("post", reverse("alerts:webhook_edit", args=[endpoint_pk])),
        "webhook_rotate": (
            "post",
            reverse("alerts:webhook_rotate", args=[endpoint_pk]),
        ),
    }


READ_ONLY = {"inbox", "rules", "webhooks", "webhook_detail"}


# Roles


@pytest.mark.parametrize("name", list(urls()))
def test_anonymous_redirected_to_login(anonymous_client, name):
    method, url = urls()[name]

    response = getattr(anonymous_client, method)(url)

    assertRedirects(response, f"{reverse('login')}?next={url}")


@pytest.mark.parametrize("name", sorted(set(urls()) - READ_ONLY))
def test_viewer_cannot_change_anything(viewer_client, endpoint, name):
    alert = make_alert()
    rule = AlertRule.objects.get(kind=RuleKind.SCORE_RISE)
    method, url = urls(endpoint.pk, rule.pk, alert.pk)[name]

    response = getattr(viewer_client, method)(url, {"name": "x", "threshold": 1})

    assert response.status_code == 403
    assert Alert.objects.get().read_at is None
    assert AuditEvent.objects.count() == 0


@pytest.mark.parametrize("name", sorted(READ_ONLY))
def test_viewer_can_read(viewer_client, endpoint, name):
    make_alert()
    method, url = urls(endpoint.pk)[name]

    response = viewer_client.get(url)

    assert response.status_code == 200


def test_viewer_sees_no_change_buttons(viewer_client):
    make_alert()

    response = viewer_client.get(INBOX)

    assertNotContains(response, "Mark read")
    assertNotContains(response, "Mark all")


@pytest.mark.parametrize(
    "name",
    sorted(name for name, (method, _) in urls().items() if method == "post"),
)
def test_post_without_csrf_token_is_rejected(analyst, frozen_now, endpoint, name):
    client = Client(enforce_csrf_checks=True)
    client.force_login(analyst)
    alert = make_alert()
    rule = AlertRule.objects.get(kind=RuleKind.SCORE_RISE)
    secret = endpoint.secret
    method, url = urls(endpoint.pk, rule.pk, alert.pk)[name]
    data = {"name": "x", "url": "https://8.8.4.4/", "threshold": 1, "enabled": "on"}

    response = client.post(url, data)

    assertContains(response, "CSRF verification failed", status_code=403)
    assert Alert.objects.get().read_at is None
    assert WebhookEndpoint.objects.get().secret == secret
    assert WebhookEndpoint.objects.get().name == "SIEM"
    assert AlertRule.objects.get(kind=RuleKind.SCORE_RISE).threshold == 20
    assert AuditEvent.objects.count() == 0


# Inbox


def test_inbox_lists_newest_first(analyst_client):
    make_alert(2, title="older alert")
    make_alert(1, title="newer alert")

    response = analyst_client.get(INBOX)

    titles = [a.title for a in response.context["page"]]
    assert titles == ["newer alert", "older alert"]


def test_inbox_marks_unread(analyst_client):
    make_alert(1, read=True)
    make_alert(2)

    response = analyst_client.get(INBOX)

    assertContains(response, "Unread</span>", count=1)
    assertContains(response, ">Read</span>", count=1)


def test_inbox_unread_filter(analyst_client):
    make_alert(1, read=True)
    unread = make_alert(2)

    response = analyst_client.get(INBOX, {"show": "unread"})

    assert list(response.context["page"]) == [unread]
    assert response.context["show"] == "unread"


def test_inbox_unknown_filter_shows_all(analyst_client):
    make_alert(1, read=True)
    make_alert(2)

    response = analyst_client.get(INBOX, {"show": "bogus"})

    assert len(response.context["page"]) == 2


def test_inbox_links_to_session_page(analyst_client):
    make_alert(session_id="a b&c")

    response = analyst_client.get(INBOX)

    assertContains(response, 'href="/sessions/detail/?id=a+b%26c"')


def test_inbox_links_sessionless_alert_to_user_page(analyst_client):
    watched = WatchedUser.objects.create(user_id="alice")
    make_alert(session_id="", watched_user=watched, kind=RuleKind.SYNC_FAILING)

    response = analyst_client.get(INBOX)

    assertContains(response, f'href="/users/{watched.pk}/"')


@pytest.mark.parametrize("hostile", HOSTILE)
def test_inbox_escapes_api_text(analyst_client, hostile):
    make_alert(
        session_id=hostile,
        user_id=hostile,
        title=f"{hostile}: alert",
        details={
            "score": 90,
            "recommended_action": hostile,
            "checks_detected": [hostile],
        },
    )

    response = analyst_client.get(INBOX)

    assertNotContains(response, hostile)
    assertContains(response, escape(hostile))


@pytest.mark.parametrize("size", [3, 60])
def test_inbox_query_count_is_bounded(
    analyst_client, django_assert_max_num_queries, size
):
    for number in range(size):
        make_alert(number)

    # Session, user, time zone, two permission queries, thresholds, account
    # state (read, and created on the first page), unread count, page count
    # and rows, and savepoints around the account state's creation.
    with django_assert_max_num_queries(13):
        analyst_client.get(INBOX)


# Unread count in the navigation


def test_nav_shows_unread_count_on_other_pages(analyst_client):
    make_alert(1)
    make_alert(2)
    make_alert(3, read=True)

    response = analyst_client.get(reverse("watchlist"))

    assertContains(response, "2 unread")


def test_nav_without_unread_shows_no_count(analyst_client):
    make_alert(1, read=True)

    response = analyst_client.get(INBOX)

    assertNotContains(response, " unread</span>")


# Mark read


def test_mark_read_sets_reader_and_audits(analyst_client, analyst):
    alert = make_alert()

    response = analyst_client.post(
        reverse("alerts:mark_read", args=[alert.pk]), {"show": "unread"}
    )

    assertRedirects(response, f"{INBOX}?show=unread")
    alert.refresh_from_db()
    assert alert.read_at == NOW
    assert alert.read_by == analyst
    event = AuditEvent.objects.get()
    assert event.action == "alert_read"
    assert event.target == f"alert {alert.pk}"


def test_mark_read_twice_audits_once(analyst_client):
    alert = make_alert()
    url = reverse("alerts:mark_read", args=[alert.pk])

    analyst_client.post(url)
    analyst_client.post(url)

    assert AuditEvent.objects.count() == 1


def test_mark_all_read(analyst_client):
    make_alert(1)
    make_alert(2)
    make_alert(3, read=True)

    analyst_client.post(reverse("alerts:mark_all_read"))

    assert Alert.objects.filter(read_at__isnull=True).count() == 0
    event = AuditEvent.objects.get()
    assert event.action == "alerts_read"
    assert event.details == {"count": 2}


def test_mark_read_is_post_only(analyst_client):
    alert = make_alert()

    response = analyst_client.get(reverse("alerts:mark_read", args=[alert.pk]))

    assert response.status_code == 405


# Rules


def test_rules_page_lists_every_rule(analyst_client):
    response = analyst_client.get(reverse("alerts:rules"))

    for kind in RuleKind:
        assertContains(response, kind.label)
    assertContains(response, "more than 20 points")
    assertContains(response, "longer than 60 minutes")


def test_rule_edit_saves_and_audits(analyst_client, analyst, endpoint):
    rule = AlertRule.objects.get(kind=RuleKind.SCORE_RISE)

    response = analyst_client.post(
        reverse("alerts:rule_edit", args=[rule.pk]),
        {
            "enabled": "on",
            "threshold": "35",
            "recipients_text": "soc@example.com\nlead@example.com",
            "webhooks": [endpoint.pk],
        },
    )

    assertRedirects(response, reverse("alerts:rules"))
    rule.refresh_from_db()
    assert rule.threshold == 35
    assert rule.email_recipients == ["soc@example.com", "lead@example.com"]
    assert list(rule.webhooks.all()) == [endpoint]
    assert rule.updated_by == analyst
    event = AuditEvent.objects.get()
    assert event.action == "rule_changed"
    assert event.target == "score_rise"
    assert event.details["threshold"] == 35
    assert "threshold" in event.details["changed"]


def test_rule_edit_saves_check_names(analyst_client):
    rule = AlertRule.objects.get(kind=RuleKind.FIRST_DETECTION)

    analyst_client.post(
        reverse("alerts:rule_edit", args=[rule.pk]),
        {"enabled": "on", "check_names_text": "vpn, tor,vpn"},
    )

    rule.refresh_from_db()
    assert rule.check_names == ["tor", "vpn"]


def test_rule_edit_can_disable(analyst_client):
    rule = AlertRule.objects.get(kind=RuleKind.BLOCK_BAND)

    analyst_client.post(reverse("alerts:rule_edit", args=[rule.pk]), {})

    rule.refresh_from_db()
    assert rule.enabled is False


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"threshold": "0"}, "at least 1"),
        ({"threshold": ""}, "required"),
        ({"threshold": "5", "recipients_text": "not-an-address"}, "not a valid"),
    ],
)
def test_rule_edit_rejects_invalid_input(analyst_client, data, error):
    rule = AlertRule.objects.get(kind=RuleKind.SYNC_FAILING)

    response = analyst_client.post(reverse("alerts:rule_edit", args=[rule.pk]), data)

    assert response.status_code == 200
    assertContains(response, error)
    rule.refresh_from_db()
    assert rule.threshold == 60
    assert AuditEvent.objects.count() == 0


def test_rule_form_hides_unused_parameters(analyst_client):
    rule = AlertRule.objects.get(kind=RuleKind.BLOCK_BAND)

    response = analyst_client.get(reverse("alerts:rule_edit", args=[rule.pk]))

    assert "threshold" not in response.context["form"].fields
    assert "check_names_text" not in response.context["form"].fields


# Webhooks


def test_webhook_add_shows_secret_once_and_audits(analyst_client, analyst):
    response = analyst_client.post(
        reverse("alerts:webhook_add"),
        {"name": "SIEM", "url": "https://8.8.8.8/hook", "enabled": "on"},
    )

    endpoint = WebhookEndpoint.objects.get()
    assert len(endpoint.secret) == 64
    assertContains(response, endpoint.secret)
    assert "no-store" in response["Cache-Control"]
    assert endpoint.created_by == analyst
    event = AuditEvent.objects.get()
    assert event.action == "webhook_changed"
    assert event.details["change"] == "created"
    assert event.details["host"] == "8.8.8.8"
    assert endpoint.secret not in str(event.details)


def test_webhook_detail_does_not_show_secret(analyst_client, endpoint):
    response = analyst_client.get(reverse("alerts:webhook_detail", args=[endpoint.pk]))

    assertNotContains(response, endpoint.secret)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost/hook",
        "http://[fd00:ec2::254]/",
    ],
)
def test_webhook_add_rejects_internal_address(analyst_client, url):
    response = analyst_client.post(
        reverse("alerts:webhook_add"), {"name": "x", "url": url, "enabled": "on"}
    )

    assert response.status_code == 200
    assertContains(response, "WEBHOOK_ALLOWED_HOSTS")
    assert WebhookEndpoint.objects.count() == 0


def test_webhook_add_accepts_allowed_host(analyst_client, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]

    analyst_client.post(
        reverse("alerts:webhook_add"),
        {"name": "local", "url": "http://127.0.0.1:9000/hook", "enabled": "on"},
    )

    assert WebhookEndpoint.objects.count() == 1


def test_webhook_edit_audits(analyst_client, endpoint):
    analyst_client.post(
        reverse("alerts:webhook_edit", args=[endpoint.pk]),
        {"name": "Renamed", "url": endpoint.url},
    )

    endpoint.refresh_from_db()
    assert endpoint.name == "Renamed"
    assert endpoint.enabled is False
    event = AuditEvent.objects.get()
    assert event.details["change"] == "updated"
    assert sorted(event.details["changed"]) == ["enabled", "name"]


def test_webhook_rotate_changes_secret(analyst_client, endpoint):
    old = endpoint.secret

    response = analyst_client.post(reverse("alerts:webhook_rotate", args=[endpoint.pk]))

    endpoint.refresh_from_db()
    assert endpoint.secret != old
    assertContains(response, endpoint.secret)
    assert AuditEvent.objects.get().details["change"] == "secret_rotated"


def test_webhook_detail_lists_deliveries(analyst_client, endpoint):
    alert = make_alert(title="<b>bold</b> alert")
    AlertDelivery.objects.create(
        alert=alert,
        endpoint=endpoint,
        attempt=1,
        due_at=NOW,
        started_at=NOW,
        finished_at=NOW,
        status_code=500,
        succeeded=False,
        error="The endpoint returned HTTP 500.",
    )
    AlertDelivery.objects.create(
        alert=alert, endpoint=endpoint, attempt=2, due_at=NOW + timedelta(minutes=1)
    )

    response = analyst_client.get(reverse("alerts:webhook_detail", args=[endpoint.pk]))

    assertContains(response, "The endpoint returned HTTP 500.")
    assertContains(response, "Failed</span>")
    assertContains(response, "Pending</span>")
    assertContains(response, escape("<b>bold</b> alert"))


@pytest.mark.parametrize("size", [2, 60])
def test_webhook_detail_query_count_is_bounded(
    analyst_client, endpoint, django_assert_max_num_queries, size
):
    for number in range(size):
        AlertDelivery.objects.create(
            alert=make_alert(number), endpoint=endpoint, attempt=1, due_at=NOW
        )

    # As the inbox, plus the endpoint, minus the thresholds.
    with django_assert_max_num_queries(13):
        analyst_client.get(reverse("alerts:webhook_detail", args=[endpoint.pk]))

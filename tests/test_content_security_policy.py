"""Every page works under the Content-Security-Policy: no inline script, style
attribute, event handler or javascript: URL, and the header on every response.
"""

from html.parser import HTMLParser
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from alerts.models import Alert, AlertDelivery, AlertRule, RuleKind, WebhookEndpoint
from alerts.rules import dedupe_key
from reviews.decisions import record_decision
from reviews.models import DecisionKind
from roundtable_sync.models import Session
from tests.test_pages_security import HOSTILE, NOW, hostile_data  # noqa: F401

EXPECTED_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
# Routes that only take POST; every other named route must be in page_urls().
POST_ONLY = {
    "logout",
    "watchlist_add",
    "watchlist_import",
    "watchlist_pause",
    "watchlist_resume",
    "tag_add",
    "tag_pause",
    "tag_resume",
    "tag_remove",
    "user_poll_now",
    "polling_resume",
    "reviews:queue_decide",
    "reviews:decide_session",
    "reviews:decide_user",
    "reviews:adopt_thresholds",
    "alerts:mark_read",
    "alerts:mark_all_read",
    "alerts:webhook_rotate",
}
# Django's admin is staff-only and its templates are Django's own.
NOT_ANALYST_PAGES = {"admin"}
# Script types that browsers treat as data blocks and never run.
DATA_SCRIPT_TYPES = {"application/json", "application/ld+json"}
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "data", "xlink:href"}


class InlineMarkupFinder(HTMLParser):
    """Collect markup that the policy blocks, with its line number."""

    def __init__(self):
        super().__init__()
        self.problems = []

    def _report(self, problem):
        self.problems.append(f"line {self.getpos()[0]}: {problem}")

    def handle_starttag(self, tag, attrs):
        names = {name for name, _ in attrs}
        for name, value in attrs:
            if name == "style":
                self._report(f"<{tag}> has a style attribute")
            elif name.startswith("on"):
                self._report(f"<{tag}> has an event handler attribute {name}")
            elif name in URL_ATTRIBUTES and (value or "").strip().lower().startswith(
                "javascript:"
            ):
                self._report(f"<{tag} {name}> is a javascript: URL")
        if tag == "style":
            self._report("inline <style> element")
        if tag == "script" and "src" not in names:
            script_type = (dict(attrs).get("type") or "").strip().lower()
            if script_type not in DATA_SCRIPT_TYPES:
                self._report("inline executable <script> element")

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)


def inline_markup(html):
    finder = InlineMarkupFinder()
    finder.feed(html)
    finder.close()
    return finder.problems


def policy_directives(header):
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def named_routes(resolver=None, namespace=""):
    """Yield (name, pattern) for every named route, with namespaces."""
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace in NOT_ANALYST_PAGES:
                continue
            inner = (
                f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            )
            yield from named_routes(pattern, inner)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield f"{namespace}{pattern.name}", pattern


@pytest.fixture
def every_kind_of_row(hostile_data, django_user_model):  # noqa: F811
    """The hostile user's data plus an alert, a decision and a webhook."""
    watched, session_id = hostile_data
    analyst = django_user_model.objects.create_user("analyst", password="unused")
    Group.objects.get(name="analysts").user_set.add(analyst)
    session = Session.objects.get(pk=session_id)
    record_decision(analyst, DecisionKind.CONFIRMED_BOT, HOSTILE, session=session)
    record_decision(analyst, DecisionKind.LEGITIMATE, HOSTILE, user_id=watched.user_id)
    rule = AlertRule.objects.get(kind=RuleKind.BLOCK_BAND)
    alert = Alert.objects.create(
        rule=rule,
        kind=rule.kind,
        dedupe_key=dedupe_key("csp", 1),
        user_id=watched.user_id,
        watched_user=watched,
        session_id=session_id,
        title=HOSTILE,
        details={"score": 95, "band": "block", "recommended_action": HOSTILE},
        created_at=NOW,
    )
    endpoint = WebhookEndpoint.objects.create(
        name=HOSTILE, url="https://8.8.8.8/hook", secret="s" * 64, created_at=NOW
    )
    AlertDelivery.objects.create(
        alert=alert,
        endpoint=endpoint,
        attempt=1,
        due_at=NOW,
        finished_at=NOW,
        status_code=500,
        succeeded=False,
        error=HOSTILE,
    )
    client = Client()
    client.force_login(analyst)
    return client, watched, session_id, rule, endpoint


def page_urls(watched, session_id, rule, endpoint):
    """Map each route an analyst can GET to the URLs that show its states."""
    user_pk = {"pk": watched.pk}
    return {
        "overview": [reverse("overview") + "?range=all"],
        "watchlist": [reverse("watchlist")],
        "watchlist_remove": [reverse("watchlist_remove", kwargs=user_pk)],
        "tag_list": [reverse("tag_list")],
        "user_detail": [reverse("user_detail", kwargs=user_pk)],
        "session_list": [
            reverse("session_list"),
            reverse("session_list") + "?" + urlencode({"q": HOSTILE, "tag": HOSTILE}),
        ],
        "session_export": [],  # CSV, not HTML; its header is checked below.
        "session_detail": [
            reverse("session_detail") + "?" + urlencode({"id": session_id})
        ],
        "preferences": [reverse("preferences")],
        "reviews:queue": [reverse("reviews:queue")],
        "reviews:calibration": [reverse("reviews:calibration")],
        "alerts:inbox": [reverse("alerts:inbox")],
        "alerts:rules": [reverse("alerts:rules")],
        "alerts:rule_edit": [reverse("alerts:rule_edit", args=[rule.pk])],
        "alerts:webhooks": [reverse("alerts:webhooks")],
        "alerts:webhook_add": [reverse("alerts:webhook_add")],
        "alerts:webhook_detail": [reverse("alerts:webhook_detail", args=[endpoint.pk])],
        "alerts:webhook_edit": [reverse("alerts:webhook_edit", args=[endpoint.pk])],
        "workflow:audit_list": [reverse("workflow:audit_list")],
        "workflow:erase_user": [
            reverse("workflow:erase_user") + "?" + urlencode({"user": watched.user_id})
        ],
        "login": [],  # Checked signed out, below.
        "favicon": [],  # A redirect to the static icon, checked below.
    }


def test_every_route_is_classified(every_kind_of_row):
    _, *objects = every_kind_of_row
    covered = set(page_urls(*objects)) | POST_ONLY

    missing = {name for name, _ in named_routes()} - covered

    assert not missing, f"add these routes to page_urls() or POST_ONLY: {missing}"


@pytest.mark.django_db
def test_every_page_has_no_inline_markup(every_kind_of_row, time_machine):
    time_machine.move_to(NOW, tick=False)
    client, *objects = every_kind_of_row
    urls = [url for group in page_urls(*objects).values() for url in group]

    for url in urls:
        response = client.get(url)

        assert response.status_code == 200, url
        assert response["Content-Type"].startswith("text/html"), url
        assert inline_markup(response.content.decode()) == [], url


@pytest.mark.django_db
def test_pages_after_posts_have_no_inline_markup(every_kind_of_row, settings):
    """Pages rendered by a POST: form errors and the new webhook's secret."""
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    client, watched, *_ = every_kind_of_row
    posts = [
        (reverse("alerts:webhook_add"), {"name": "x", "url": "http://127.0.0.1/"}),
        (reverse("alerts:webhook_add"), {"name": "", "url": "not a url"}),
        (reverse("preferences"), {"time_zone": "Not/AZone"}),
    ]

    for url, data in posts:
        response = client.post(url, data)

        assert response.status_code == 200, url
        assert inline_markup(response.content.decode()) == [], url


@pytest.mark.django_db
def test_login_page_has_no_inline_markup():
    response = Client().get(reverse("login"))

    assert inline_markup(response.content.decode()) == []


def test_finder_reports_each_kind_of_inline_markup():
    html = (
        '<p style="color:red">x</p><a href=" JavaScript:go()">x</a>'
        '<img src=x onerror="go()"><script>go()</script><style>p{}</style>'
        '<script type="application/json">{"a": 1}</script>'
        '<script src="/static/js/overview.js"></script>'
    )

    problems = inline_markup(html)

    assert len(problems) == 5
    assert "style attribute" in problems[0]
    assert "javascript: URL" in problems[1]
    assert "event handler attribute onerror" in problems[2]
    assert "inline executable <script>" in problems[3]
    assert "inline <style>" in problems[4]


def assert_expected_policy(response, label):
    header = response.get("Content-Security-Policy")
    assert header, f"{label}: no Content-Security-Policy header"
    assert policy_directives(header) == EXPECTED_POLICY, label
    assert "unsafe" not in header, label


@pytest.mark.django_db
def test_every_page_sends_the_policy(every_kind_of_row):
    client, *objects = every_kind_of_row
    urls = [url for group in page_urls(*objects).values() for url in group]
    urls.append(reverse("session_export"))

    for url in urls:
        assert_expected_policy(client.get(url), url)


@pytest.mark.django_db
def test_other_responses_send_the_policy(every_kind_of_row, django_user_model):
    client, watched, *_ = every_kind_of_row
    viewer = django_user_model.objects.create_user("viewer", password="unused")
    Group.objects.get(name="viewers").user_set.add(viewer)
    viewer_client = Client()
    viewer_client.force_login(viewer)
    responses = {
        "login page": Client().get(reverse("login")),
        "login redirect": Client().get(reverse("overview")),
        "static file": Client().get("/static/css/dashboard.css"),
        "favicon redirect": Client().get(reverse("favicon")),
        "not found": client.get("/no-such-page/"),
        "forbidden": viewer_client.post(reverse("polling_resume")),
        "redirect after POST": client.post(
            reverse("watchlist_pause", kwargs={"pk": watched.pk})
        ),
        "method not allowed": client.get(reverse("logout")),
    }

    for label, response in responses.items():
        assert_expected_policy(response, label)

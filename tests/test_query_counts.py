"""Every page runs a fixed number of queries, whatever the amount of data.

Each test loads a page with one of everything the page lists, then again with
several of everything. The second load must run exactly as many queries as
the first, so no query runs once per row, and at most a fixed bound.
"""

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from alerts.models import Alert, AlertDelivery, AlertRule, RuleKind, WebhookEndpoint
from alerts.rules import dedupe_key
from reviews.decisions import record_decision
from reviews.models import DecisionKind
from roundtable_sync import user_risk
from roundtable_sync.models import (
    CoverageGap,
    PendingTagSession,
    PollRecord,
    ScoreChange,
    Session,
    SessionEvent,
    ThresholdSetting,
    WatchedTag,
    WatchedUser,
)
from roundtable_sync.parsing import parse_session_list
from roundtable_sync.store import store_sessions
from tests import payloads
from tests.fixtures_web import (  # noqa: F401
    NOW,
    analyst_client_fixture,
    analyst_fixture,
    frozen_now_fixture,
)

pytestmark = pytest.mark.django_db

FOCUS_USER = "focus-user"
FOCUS_SESSION = "focus-session"
# Units of data added between the two loads of a page. Below every page size,
# so each added row is shown and a query per row would change the count.
MORE = 6


def stored_session(user_id, session_id, minutes_ago, score, action):
    """Store one session through the product's store path, with checks and logs."""
    moment = NOW - timedelta(minutes=minutes_ago)
    payload = payloads.session(
        session_id,
        risk_score=score,
        recommended_action=action,
        tags=["checkout-flow", f"tag-{session_id}"],
        user_logs=[
            {
                "action": "Navigated to /checkout",
                "user_time": "Mar 1, 2026 10:00:00",
                "unix_timestamp": int(moment.timestamp() * 1000),
            }
        ],
    )
    parsed = parse_session_list(
        payloads.user_sessions(user_id, [payload]), "user_id"
    ).sessions
    store_sessions(user_id, parsed, NOW)


def add_unit(analyst, endpoint, number):
    """Add one more of every row that some page lists or counts."""
    user_id = f"user-{number}"
    watched = WatchedUser.objects.create(
        user_id=user_id,
        added_by=analyst,
        last_polled_at=NOW,
        last_poll_outcome="synced",
    )
    for k, (score, action) in enumerate(
        [
            (85, "Auto-reject or high-priority review"),
            (75, "Manual review or require additional verification"),
            (10, "Auto-accept"),
        ]
    ):
        stored_session(user_id, f"s-{number}-{k}", 60 * number + k, score, action)
    decided = Session.objects.get(pk=f"s-{number}-0")
    record_decision(analyst, DecisionKind.CONFIRMED_BOT, "bot", session=decided)

    # The user page's user and the session page's session grow too.
    stored_session(FOCUS_USER, f"focus-{number}", 30 * number, 60 + number, "Unknown")
    focus = Session.objects.get(pk=FOCUS_SESSION)
    SessionEvent.objects.create(
        session=focus, position=100 + number, action=f"Clicked {number}"
    )
    ScoreChange.objects.create(
        session=focus, observed_at=NOW, old_score=number, new_score=number + 1
    )
    record_decision(analyst, DecisionKind.NEEDS_EVIDENCE, "look", session=focus)
    record_decision(analyst, DecisionKind.ESCALATED, "user", user_id=FOCUS_USER)
    for target in (user_id, FOCUS_USER):
        PollRecord.objects.create(
            user_id=target, started_at=NOW, finished_at=NOW, outcome="synced"
        )
    CoverageGap.objects.create(user_id=FOCUS_USER, detected_at=NOW)

    rule = AlertRule.objects.get(kind=RuleKind.BLOCK_BAND)
    alert = Alert.objects.create(
        rule=rule,
        kind=rule.kind,
        dedupe_key=dedupe_key("query-count", number),
        user_id=user_id,
        watched_user=watched,
        session_id=decided.session_id,
        title=f"{user_id} entered the block band",
        details={
            "score": 85,
            "band": "block",
            "recommended_action": "Auto-reject or high-priority review",
            "checks_detected": ["bot", "vpn"],
        },
        created_at=NOW - timedelta(minutes=number),
        read_at=NOW if number % 2 else None,
        read_by=analyst if number % 2 else None,
    )
    AlertDelivery.objects.create(alert=alert, endpoint=endpoint, attempt=1, due_at=NOW)
    extra_endpoint = WebhookEndpoint.objects.create(
        name=f"Hook {number}",
        url=f"https://8.8.8.{number % 250 + 1}/hook",
        secret="s" * 64,
        created_at=NOW,
        created_by=analyst,
    )
    rule.webhooks.add(extra_endpoint)

    tag = WatchedTag.objects.create(tag=f"watched-{number}", added_by=analyst)
    PendingTagSession.objects.create(
        session_id=f"pending-{number}", watched_tag=tag, first_seen_at=NOW
    )
    ThresholdSetting.objects.create(
        review=50, block=70, adopted_at=NOW - timedelta(days=1), adopted_by=analyst
    )


@pytest.fixture(name="grow")
def grow_fixture(analyst):
    """Return a function that adds ``count`` more units of data."""
    stored_session(
        FOCUS_USER, FOCUS_SESSION, 5, 90, "Auto-reject or high-priority review"
    )
    focus_watched = WatchedUser.objects.create(user_id=FOCUS_USER, added_by=analyst)
    endpoint = WebhookEndpoint.objects.create(
        name="SIEM", url="https://8.8.8.8/hook", secret="s" * 64, created_at=NOW
    )
    added = 0

    def grow(count):
        nonlocal added
        for number in range(added, added + count):
            add_unit(analyst, endpoint, number)
        added += count
        # As the worker would, so the overview reads the per-user summaries.
        user_risk.refresh()
        return focus_watched

    return grow


def count_queries(client, url):
    """Return the queries of one load of ``url``, after a load that warms caches.

    The warm-up load creates the account state row and caches the thresholds,
    so both measured loads start from the same state.
    """
    cache.clear()
    client.get(url)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return captured


def explorer(**params):
    return f"{reverse('session_list')}?{urlencode(params)}"


EVERY_FILTER = {
    "score_min": "1",
    "score_max": "99",
    "band": "block",
    "flagged": "1",
    "decision": "confirmed_bot",
    "action": "Auto-reject or high-priority review",
    "tag": "checkout-flow",
    "check_name": "bot",
    "check_status": "detected",
    "since": "2026-01-01",
    "until": "2026-03-02T12:00",
    "q": "s-",
}

# (name, URL builder taking the focus user's WatchedUser, maximum queries).
# Every page's count includes about six queries of the layout: the session,
# the analyst, their time zone and permissions, the account state and the
# unread alert count.
PAGES = [
    *[
        (f"overview {key}", lambda _, key=key: f"/?range={key}", 24)
        for key in ("24h", "7d", "30d", "all")
    ],
    ("explorer", lambda _: explorer(), 10),
    ("explorer last page", lambda _: explorer(last="1", sort="score"), 10),
    ("explorer every filter", lambda _: explorer(**EVERY_FILTER), 10),
    ("explorer user filter", lambda _: explorer(user=FOCUS_USER), 10),
    # A search that fills no page from the recent window also checks the
    # window's size.
    ("explorer search", lambda _: explorer(q="no-such-text"), 11),
    ("explorer decision kind", lambda _: explorer(decision="confirmed_bot"), 10),
    (
        "user page",
        lambda focus: reverse("user_detail", args=[focus.pk]),
        17,
    ),
    (
        "user page filtered",
        lambda focus: reverse("user_detail", args=[focus.pk]) + "?band=block&q=f",
        17,
    ),
    (
        "session page",
        lambda _: f"{reverse('session_detail')}?{urlencode({'id': FOCUS_SESSION})}",
        13,
    ),
    ("review queue", lambda _: reverse("reviews:queue"), 10),
    ("calibration", lambda _: reverse("reviews:calibration"), 11),
    ("watchlist", lambda _: reverse("watchlist"), 9),
    ("tags", lambda _: reverse("tag_list"), 8),
    ("alerts inbox", lambda _: reverse("alerts:inbox"), 9),
    ("alert rules", lambda _: reverse("alerts:rules"), 9),
    ("webhooks", lambda _: reverse("alerts:webhooks"), 9),
    ("audit trail", lambda _: reverse("workflow:audit_list"), 8),
]


@pytest.mark.parametrize(
    ("url_for", "bound"),
    [pytest.param(url_for, bound, id=name) for name, url_for, bound in PAGES],
)
def test_page_queries_stay_fixed(analyst_client, grow, url_for, bound):
    focus = grow(1)
    url = url_for(focus)
    few = count_queries(analyst_client, url)

    grow(MORE)
    many = count_queries(analyst_client, url)

    assert len(many) <= bound, [query["sql"] for query in many.captured_queries]
    assert len(many) == len(few), [query["sql"] for query in many.captured_queries]

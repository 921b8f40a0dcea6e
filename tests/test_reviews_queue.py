from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.urls import reverse
from pytest_django.asserts import assertContains, assertNotContains

from reviews import views
from reviews.decisions import record_decision
from reviews.models import Decision
from tests.fixtures_web import (  # noqa: F401
    NOW,
    anonymous_client_fixture,
    frozen_now_fixture,
    make_session,
)
from tests.test_reviews_decisions import (  # noqa: F401
    HOSTILE,
    reviewer_client_fixture,
    reviewer_fixture,
    viewer_client_fixture,
    viewer_fixture,
)
from workflow.models import AuditEvent

pytestmark = pytest.mark.django_db

QUEUE_URL = "/reviews/queue/"


@pytest.fixture(name="flagged")
def flagged_fixture(frozen_now):
    """Three flagged sessions (two at the same time) and two that are not."""
    make_session("u", "late", NOW, risk_score=75)
    make_session("u", "early-b", NOW - timedelta(hours=2), risk_score=55)
    make_session(
        "u",
        "early-a",
        NOW - timedelta(hours=2),
        risk_score=10,
        recommended_action="Auto-reject or high-priority review",
    )
    make_session("u", "clean", NOW - timedelta(hours=3), risk_score=10)
    make_session("u", "unscored", NOW - timedelta(hours=3), risk_score=None)


def decide(client, session_id, kind="legitimate", after=""):
    return client.post(
        reverse("reviews:queue_decide"),
        {"session": session_id, "kind": kind, "note": "", "after": after},
    )


def test_queue_url():
    assert reverse("reviews:queue") == QUEUE_URL


def test_queue_starts_with_oldest_flagged(reviewer_client, flagged):
    response = reviewer_client.get(QUEUE_URL)

    assert response.context["session"].session_id == "early-a"
    assert response.context["remaining"] == 3


def test_decide_goes_to_next_in_order(reviewer_client, flagged):
    seen = []
    response = reviewer_client.get(QUEUE_URL)
    while response.context["session"] is not None:
        session_id = response.context["session"].session_id
        seen.append(session_id)
        response = reviewer_client.get(decide(reviewer_client, session_id)["Location"])

    assert seen == ["early-a", "early-b", "late"]
    assert Decision.objects.count() == 3
    assertContains(response, "Every flagged session has a decision.")


def test_decide_redirects_after_decided_session(reviewer_client, flagged):
    response = decide(reviewer_client, "early-a", "confirmed_bot")

    assert response["Location"] == f"{QUEUE_URL}?{urlencode({'after': 'early-a'})}"


def test_decide_is_audited(reviewer_client, reviewer, flagged):
    decide(reviewer_client, "early-b", "escalated")

    event = AuditEvent.objects.get(action="decision_recorded")
    assert event.actor == reviewer
    assert event.target == "session early-b"
    assert event.details == {"kind": "escalated"}


def test_skip_shows_next_and_keeps_skipped(reviewer_client, flagged):
    response = reviewer_client.get(QUEUE_URL, {"after": "early-a"})

    assert response.context["session"].session_id == "early-b"
    assert response.context["remaining"] == 3


def test_end_after_skips_offers_restart(reviewer_client, flagged):
    response = reviewer_client.get(QUEUE_URL, {"after": "late"})

    assert response.context["session"] is None
    assertContains(response, "Start again from the oldest")


def test_decided_session_leaves_queue(reviewer_client, reviewer, flagged):
    session = make_session("u", "decided", NOW - timedelta(days=1), risk_score=99)
    record_decision(reviewer, "needs_evidence", "", session=session)

    response = reviewer_client.get(QUEUE_URL)

    assert response.context["session"].session_id == "early-a"


def test_queue_shows_evidence(reviewer_client, frozen_now):
    make_session(
        "u",
        "s1",
        NOW,
        risk_score=80,
        risk_explanation="Typing too regular",
        recommended_action="Manual review or require additional verification",
        checks={"biometric": {"programmatic_typing": "Detected"}, "device": {}},
    )

    response = reviewer_client.get(QUEUE_URL)

    assertContains(response, "80 (block)")
    assertContains(response, "Manual review or require additional verification")
    assertContains(response, "Typing too regular")
    assertContains(response, "<code>programmatic_typing</code>")
    assertContains(response, 'class="user-id">u</span>')


def test_form_is_keyboard_ready(reviewer_client, flagged):
    response = reviewer_client.get(QUEUE_URL)

    assertContains(response, "autofocus", count=1)
    assertContains(response, 'type="radio"', count=4)
    assertContains(response, "js/review_queue.js")
    assertContains(response, "Decide and go to next")
    assertNotContains(response, "<script>")


def test_remaining_count_is_capped(reviewer_client, frozen_now, monkeypatch):
    monkeypatch.setattr(views, "MAX_QUEUE_COUNT", 2)
    for index in range(4):
        make_session("u", f"s{index}", NOW, risk_score=90)

    response = reviewer_client.get(QUEUE_URL)

    assert response.context["remaining"] == 2
    assertContains(response, "More than 2 sessions left to decide.")


@pytest.mark.parametrize("size", [3, 60])
def test_queue_query_count_is_bounded(
    reviewer_client, frozen_now, size, django_assert_max_num_queries
):
    for index in range(size):
        make_session("u", f"s{index:03}", NOW, risk_score=90)

    with django_assert_max_num_queries(14):
        reviewer_client.get(QUEUE_URL)


def test_viewer_reads_queue_without_form(viewer_client, flagged):
    response = viewer_client.get(QUEUE_URL)

    assert response.status_code == 200
    assertNotContains(response, reverse("reviews:queue_decide"))


def test_viewer_decide_is_403(viewer_client, flagged):
    response = decide(viewer_client, "early-a")

    assert response.status_code == 403
    assert not Decision.objects.exists()


def test_anonymous_is_sent_to_login(anonymous_client, flagged):
    responses = [anonymous_client.get(QUEUE_URL), decide(anonymous_client, "early-a")]

    for response in responses:
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    assert not Decision.objects.exists()


def test_invalid_decision_records_nothing(reviewer_client, flagged):
    response = decide(reviewer_client, "early-a", kind="")

    assert response.status_code == 302
    assert not Decision.objects.exists()


def test_hostile_text_is_escaped(reviewer_client, frozen_now):
    for index, text in enumerate(HOSTILE):
        make_session(
            f"user{text}",
            f"s{index}{text}",
            NOW + timedelta(minutes=index),
            risk_score=90,
            risk_explanation=text,
            tags=[text],
        )

    responses = [
        reviewer_client.get(QUEUE_URL),
        reviewer_client.get(QUEUE_URL, {"after": f"s0{HOSTILE[0]}"}),
    ]

    for response in responses:
        for text in HOSTILE:
            assertNotContains(response, text)

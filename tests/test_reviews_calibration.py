from datetime import timedelta

import pytest
from django.urls import reverse
from pytest_django.asserts import assertContains, assertNotContains

from reviews.decisions import record_decision
from roundtable_sync.bands import Band, current_thresholds
from roundtable_sync.models import ThresholdSetting
from tests.fixtures_web import (  # noqa: F401
    NOW,
    anonymous_client_fixture,
    frozen_now_fixture,
    make_session,
)
from tests.test_reviews_decisions import (  # noqa: F401
    reviewer_client_fixture,
    reviewer_fixture,
    viewer_client_fixture,
    viewer_fixture,
)
from workflow.models import AuditEvent

pytestmark = pytest.mark.django_db

CALIBRATION_URL = "/reviews/calibration/"
MANUAL_REVIEW = "Manual review or require additional verification"


@pytest.fixture(name="known_data")
def known_data_fixture(reviewer, frozen_now, settings):
    """Six sessions under the default thresholds (review 50, block 70).

    Scores 10 and 40 are allow, 55 and 65 review, 75 block, one is unscored.
    Decisions: 10 legitimate, 40 confirmed bot, 55 and 65 legitimate and
    escalated, 75 confirmed bot (first needs evidence, then confirmed).
    """
    settings.ROUNDTABLE_REVIEW_THRESHOLD = 50
    settings.ROUNDTABLE_BLOCK_THRESHOLD = 70
    scores = {"a10": 10, "a40": 40, "r55": 55, "r65": 65, "b75": 75, "none": None}
    sessions = {
        session_id: make_session(
            "u",
            session_id,
            NOW,
            risk_score=score,
            recommended_action=MANUAL_REVIEW if score == 55 else "Auto-accept",
        )
        for session_id, score in scores.items()
    }
    decisions = {
        "a10": "legitimate",
        "a40": "confirmed_bot",
        "r55": "legitimate",
        "r65": "escalated",
        "b75": "needs_evidence",
    }
    for session_id, kind in decisions.items():
        record_decision(reviewer, kind, "", session=sessions[session_id])
    record_decision(reviewer, "confirmed_bot", "", session=sessions["b75"])
    return sessions


def rows_by_band(response):
    return {row.band: row for row in response.context["comparison"]["rows"]}


def test_counts_under_current_thresholds(reviewer_client, known_data):
    response = reviewer_client.get(CALIBRATION_URL)

    rows = rows_by_band(response)
    assert rows[Band.ALLOW].current_sessions == 2
    assert rows[Band.REVIEW].current_sessions == 2
    assert rows[Band.BLOCK].current_sessions == 1
    assert response.context["comparison"]["unscored"] == 1
    assert response.context["comparison"]["total"] == 6


def test_counts_under_candidate_thresholds(reviewer_client, known_data):
    response = reviewer_client.get(CALIBRATION_URL, {"review": 30, "block": 60})

    rows = rows_by_band(response)
    assert rows[Band.ALLOW].candidate_sessions == 1
    assert rows[Band.REVIEW].candidate_sessions == 2
    assert rows[Band.BLOCK].candidate_sessions == 2
    assert rows[Band.BLOCK].current_sessions == 1


def test_agreement_per_band(reviewer_client, known_data):
    response = reviewer_client.get(CALIBRATION_URL, {"review": 30, "block": 60})

    rows = rows_by_band(response)
    # In force: allow holds a10 (legitimate) and a40 (bot), so one of two.
    assert rows[Band.ALLOW].current.decided == 2
    assert rows[Band.ALLOW].current.share == 50.0
    # Review holds r55 (legitimate) and r65 (escalated).
    assert rows[Band.REVIEW].current.share == 50.0
    # Block holds b75, whose newest decision is confirmed bot.
    assert rows[Band.BLOCK].current.share == 100.0
    # Candidate: a40 (bot) moves to review, r65 (escalated) to block.
    assert rows[Band.ALLOW].candidate.share == 100.0
    assert rows[Band.REVIEW].candidate.share == 0.0
    assert rows[Band.BLOCK].candidate.share == 50.0


def test_overall_agreement(reviewer_client, known_data):
    response = reviewer_client.get(CALIBRATION_URL, {"review": 30, "block": 60})

    comparison = response.context["comparison"]
    assert comparison["current_overall"] == {
        "agreeing": 3,
        "decided": 5,
        "share": 60.0,
    }
    assert comparison["candidate_overall"]["agreeing"] == 2


def test_decision_mix_per_action(reviewer_client, known_data):
    response = reviewer_client.get(CALIBRATION_URL)

    by_action = dict(response.context["action_agreement"])
    accept = by_action["Auto-accept"]
    assert accept.decided == 4
    assert accept.mix == [
        ("Confirmed bot", 2),
        ("Legitimate (false positive)", 1),
        ("Needs more evidence", 0),
        ("Escalated", 1),
    ]
    assert accept.share == 25.0
    assert by_action[MANUAL_REVIEW].share == 0.0


@pytest.mark.parametrize(
    ("review", "block"),
    [("0", "60"), ("30", "101"), ("60", "60"), ("70", "50"), ("x", "60")],
)
def test_invalid_candidate_is_rejected(reviewer_client, known_data, review, block):
    response = reviewer_client.get(CALIBRATION_URL, {"review": review, "block": block})

    assert response.context["form"].errors
    assert response.context["candidate"] == current_thresholds()
    assertNotContains(response, reverse("reviews:adopt_thresholds"))


def adopt(client, review, block):
    return client.post(
        reverse("reviews:adopt_thresholds"), {"review": review, "block": block}
    )


def test_adopt_stores_setting(reviewer_client, reviewer, known_data):
    response = adopt(reviewer_client, 40, 60)

    setting = ThresholdSetting.objects.get()
    assert response.status_code == 302
    assert (setting.review, setting.block) == (40, 60)
    assert setting.adopted_by == reviewer
    assert setting.adopted_at == NOW


def test_adopt_is_audited_with_old_and_new(reviewer_client, reviewer, known_data):
    adopt(reviewer_client, 40, 60)

    event = AuditEvent.objects.get(action="thresholds_adopted")
    assert event.actor == reviewer
    assert event.details == {
        "old": {"review": 50, "block": 70},
        "new": {"review": 40, "block": 60},
    }


def test_adopt_changes_bands_everywhere(reviewer_client, frozen_now, settings):
    settings.ROUNDTABLE_BLOCK_THRESHOLD = 70
    make_session("u", "s60", NOW, risk_score=60)
    assert current_thresholds().band(60) == Band.REVIEW

    adopt(reviewer_client, 50, 60)

    overview = reviewer_client.get(reverse("overview"))
    explorer = reviewer_client.get(reverse("session_list"), {"band": "block"})
    assert current_thresholds().band(60) == Band.BLOCK
    assert overview.context["counts"]["high_risk"] == 1
    assert [row.session_id for row in explorer.context["table"].rows] == ["s60"]
    assertContains(explorer, "60 (block)")


def test_adoption_history_newest_first(reviewer_client, known_data, time_machine):
    adopt(reviewer_client, 40, 60)
    time_machine.move_to(NOW + timedelta(hours=1), tick=False)
    adopt(reviewer_client, 45, 80)

    response = reviewer_client.get(CALIBRATION_URL)

    adoptions = list(response.context["adoptions"])
    assert [(row.review, row.block) for row in adoptions] == [(45, 80), (40, 60)]
    assertContains(response, "2026-03-02 13:00:00 UTC")


def test_adopting_thresholds_in_force_adds_nothing(reviewer_client, known_data):
    adopt(reviewer_client, 50, 70)

    assert not ThresholdSetting.objects.exists()
    assert not AuditEvent.objects.filter(action="thresholds_adopted").exists()


def test_invalid_adoption_is_rejected(reviewer_client, known_data):
    response = adopt(reviewer_client, 70, 50)

    assert response.status_code == 302
    assert not ThresholdSetting.objects.exists()


def test_viewer_reads_page_but_cannot_adopt(viewer_client, known_data):
    page = viewer_client.get(CALIBRATION_URL, {"review": 40, "block": 60})
    response = adopt(viewer_client, 40, 60)

    assert page.status_code == 200
    assertNotContains(page, reverse("reviews:adopt_thresholds"))
    assert response.status_code == 403
    assert not ThresholdSetting.objects.exists()


def test_anonymous_is_sent_to_login(anonymous_client, known_data):
    responses = [anonymous_client.get(CALIBRATION_URL), adopt(anonymous_client, 40, 60)]

    for response in responses:
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    assert not ThresholdSetting.objects.exists()


def test_adopt_button_offered_for_valid_candidate(reviewer_client, known_data):
    response = reviewer_client.get(CALIBRATION_URL, {"review": 40, "block": 60})

    assertContains(response, reverse("reviews:adopt_thresholds"))


@pytest.mark.parametrize("size", [5, 80])
def test_query_count_is_bounded(
    reviewer_client, reviewer, frozen_now, size, django_assert_max_num_queries
):
    for index in range(size):
        session = make_session("u", f"s{index:03}", NOW, risk_score=index)
        record_decision(reviewer, "legitimate", "", session=session)

    with django_assert_max_num_queries(15):
        reviewer_client.get(CALIBRATION_URL, {"review": 40, "block": 60})

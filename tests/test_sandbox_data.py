from datetime import UTC, datetime, timedelta

import pytest

from roundtable_sync.sandbox import data
from roundtable_sync.sandbox.checks import (
    BIOMETRIC_CHECKS,
    CHECK_INTRODUCED,
    DEVICE_CHECKS,
    RECOMMENDED_ACTIONS,
    UNKNOWN_ACTION,
    recommended_action,
)
from roundtable_sync.sandbox.events import format_user_time

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
STATUSES = {"Detected", "Not detected", "Unknown"}


def clear_caches():
    for cached in (
        data.user_profile,
        data._day_starts,
        data._traits,
        data._assessment,
        data._events,
    ):
        cached.cache_clear()


def first_event_ms(session):
    events = data.session_events(session["session_id"], NOW)
    return events[0]["unix_timestamp"]


def test_same_user_and_time_give_same_sessions():
    first = data.user_sessions("alice@example.com", NOW)
    clear_caches()

    second = data.user_sessions("alice@example.com", NOW)

    assert first == second


def test_different_users_get_different_sessions():
    alice = data.user_sessions("alice@example.com", NOW)

    bob = data.user_sessions("bob@example.com", NOW)

    assert {s["session_id"] for s in alice}.isdisjoint(s["session_id"] for s in bob)


def test_busy_user_capped_at_100_newest_first():
    sessions = data.user_sessions("bot-farm-7", NOW)

    starts = [first_event_ms(s) for s in sessions]
    assert len(sessions) == 100
    assert starts == sorted(starts, reverse=True)
    assert starts[0] <= NOW.timestamp() * 1000


def test_busy_user_has_hundreds_of_sessions_in_history():
    history = list(data._recent("bot-farm-7", int(NOW.timestamp() * 1000)))

    assert len(history) > 300


def test_history_reaches_back_about_120_days():
    sessions = data.user_sessions("josé.garcía@example.es", NOW)

    oldest = datetime.fromtimestamp(first_event_ms(sessions[-1]) / 1000, UTC)
    assert len(sessions) < 100
    assert NOW - oldest > timedelta(days=100)
    assert NOW - oldest <= data.HISTORY


def test_time_passing_adds_new_sessions():
    before = data.user_sessions("bot-farm-7", NOW)

    later = data.user_sessions("bot-farm-7", NOW + timedelta(hours=3))

    known = {s["session_id"] for s in before}
    new = [s for s in later if s["session_id"] not in known]
    assert new
    assert later[0]["session_id"] in {s["session_id"] for s in new}


def test_sessions_do_not_appear_before_they_start():
    session = data.user_sessions("alice@example.com", NOW)[0]
    first, _ = data.session_period(session["session_id"])

    report = data.session_report(session["session_id"], first - timedelta(seconds=1))

    assert report is None


def test_session_fields_have_documented_types():
    for user_id in data.DEMO_USER_IDS:
        for session in data.user_sessions(user_id, NOW):
            assert isinstance(session["session_id"], str)
            assert session["tags"]
            assert 0 <= session["risk_score"] <= 100
            assert session["risk_explanation"]
            assert session["recommended_action"] in (
                *RECOMMENDED_ACTIONS,
                UNKNOWN_ACTION,
            )
            assert set(session["biometric_checks"]) <= set(BIOMETRIC_CHECKS)
            assert set(session["device_checks"]) <= set(DEVICE_CHECKS)
            statuses = {
                *session["biometric_checks"].values(),
                *session["device_checks"].values(),
            }
            assert statuses <= STATUSES


def test_recommended_action_mostly_follows_bands():
    sessions = [
        s for user_id in data.DEMO_USER_IDS for s in data.user_sessions(user_id, NOW)
    ]

    matching = [
        s
        for s in sessions
        if s["recommended_action"] == recommended_action(s["risk_score"])
    ]
    unknown = [s for s in sessions if s["recommended_action"] == UNKNOWN_ACTION]
    assert len(matching) / len(sessions) > 0.8
    assert len(matching) < len(sessions)
    assert unknown


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (0, "Auto-accept"),
        (29, "Auto-accept"),
        (30, "Accept with monitoring"),
        (49, "Accept with monitoring"),
        (50, "Manual review or require additional verification"),
        (69, "Manual review or require additional verification"),
        (70, "Auto-reject or high-priority review"),
        (100, "Auto-reject or high-priority review"),
    ],
)
def test_recommended_action_bands(score, expected):
    assert recommended_action(score) == expected


def test_high_scores_name_detected_checks():
    sessions = [
        s
        for user_id in data.DEMO_USER_IDS
        for s in data.user_sessions(user_id, NOW)
        if s["risk_score"] >= 70
    ]

    assert sessions
    for session in sessions:
        checks = {**session["biometric_checks"], **session["device_checks"]}
        assert "Detected" in checks.values()
        assert "detected" in session["risk_explanation"].lower()


def test_clean_sessions_mostly_have_no_bot_signals():
    sessions = [
        s for s in data.user_sessions("alice@example.com", NOW) if s["risk_score"] < 20
    ]

    clean = [s for s in sessions if "Detected" not in s["biometric_checks"].values()]
    assert sessions
    assert len(clean) / len(sessions) > 0.7


def test_agent_behavior_often_unknown():
    sessions = data.user_sessions("alice@example.com", NOW)

    statuses = [s["biometric_checks"].get("agent_behavior") for s in sessions]
    assert statuses.count("Unknown") > 20


def test_older_sessions_lack_newer_checks():
    sessions = data.user_sessions("josé.garcía@example.es", NOW)
    cutoff = CHECK_INTRODUCED["external_input"].timestamp() * 1000

    older = [s for s in sessions if first_event_ms(s) < cutoff]

    assert older
    for session in older:
        assert "external_input" not in session["biometric_checks"]
        assert "user_logs" in session
        assert session["user_logs"] == data.session_events(session["session_id"], NOW)


def test_newer_sessions_omit_user_logs():
    sessions = data.user_sessions("bot-farm-7", NOW)

    for session in sessions:
        assert "user_logs" not in session
        assert set(session["biometric_checks"]) == set(BIOMETRIC_CHECKS)
        assert set(session["device_checks"]) == set(DEVICE_CHECKS)


def test_demo_users_cover_risky_and_clean():
    averages = {}
    for user_id in data.DEMO_USER_IDS:
        scores = [s["risk_score"] for s in data.user_sessions(user_id, NOW)]
        averages[user_id] = sum(scores) / len(scores)

    assert 4 <= len(data.DEMO_USER_IDS) <= 6
    assert min(averages.values()) < 30
    assert max(averages.values()) >= 70


def test_session_id_decodes_to_user_and_slot():
    for user_id in ("alice@example.com", "a/b?c#d%e f é"):
        session = data.user_sessions(user_id, NOW)[0]

        key = data.decode_session_id(session["session_id"])

        assert key.user_id == user_id
        assert data.encode_session_id(key) == session["session_id"]


def test_report_works_for_old_sessions_after_cache_loss():
    session = data.user_sessions("josé.garcía@example.es", NOW)[-1]
    clear_caches()

    report = data.session_report(session["session_id"], NOW + timedelta(days=365))

    assert report["user_id"] == "josé.garcía@example.es"
    assert report["risk_score"] == session["risk_score"]


@pytest.mark.parametrize(
    "session_id",
    ["", "abc123def456", "not base64!", "sh_7lpY5AABRKAAAYWxpY2VAZXhhbXBsZS5jb21", "é"],
)
def test_unknown_session_ids_decode_to_none(session_id):
    assert data.decode_session_id(session_id) is None
    assert data.session_report(session_id, NOW) is None
    assert data.session_events(session_id, NOW) is None


def test_tampered_session_id_is_unknown():
    session_id = data.user_sessions("alice@example.com", NOW)[0]["session_id"]
    key = data.decode_session_id(session_id)
    tampered = data.SessionKey(key.user_id, key.day, key.index + 500)

    report = data.session_report(data.encode_session_id(tampered), NOW)

    assert report is None


def test_live_session_score_changes_then_freezes():
    session_id = data.user_sessions("bot-farm-7", NOW)[5]["session_id"]
    first, last = data.session_period(session_id)
    live_times = [first + data.SCORE_STEP * step for step in range(10)]
    frozen_times = [last + data.LIVE_TIMEOUT, last + timedelta(days=30)]

    live_scores = [data.session_report(session_id, t)["risk_score"] for t in live_times]
    frozen_scores = [
        data.session_report(session_id, t)["risk_score"] for t in frozen_times
    ]

    assert all(data.is_live(session_id, t) for t in live_times)
    assert not data.is_live(session_id, frozen_times[0])
    assert len(set(live_scores)) > 2
    assert frozen_scores[0] == frozen_scores[1]


def test_live_score_converges_on_final_score():
    session_id = data.user_sessions("bot-farm-7", NOW)[5]["session_id"]
    first, last = data.session_period(session_id)
    final = data.session_report(session_id, last + timedelta(days=1))["risk_score"]

    late = data.session_report(session_id, last + data.LIVE_TIMEOUT - data.SCORE_STEP)

    assert abs(late["risk_score"] - final) <= 5


def test_live_session_gains_events():
    session_id = data.user_sessions("alice@example.com", NOW)[3]["session_id"]
    first, last = data.session_period(session_id)

    early = data.session_events(session_id, first)
    complete = data.session_events(session_id, last)

    assert len(early) == 1
    assert len(complete) > 1
    assert data.session_events(session_id, last + timedelta(days=3)) == complete


def test_events_start_at_session_start_in_order():
    session_id = data.user_sessions("carol+shop@example.net", NOW)[0]["session_id"]
    first, last = data.session_period(session_id)

    events = data.session_events(session_id, NOW)

    timestamps = [e["unix_timestamp"] for e in events]
    assert timestamps[0] == int(first.timestamp() * 1000)
    assert timestamps[-1] == int(last.timestamp() * 1000)
    assert timestamps == sorted(timestamps)
    assert events[0]["action"].startswith("Navigated to /")


def test_user_time_is_local_display_time():
    timestamp = int(datetime(2025, 3, 25, 14, 30, 50, tzinfo=UTC).timestamp() * 1000)

    assert format_user_time(timestamp, 0) == "Mar 25, 2025 14:30:50"
    assert format_user_time(timestamp, -300) == "Mar 25, 2025 09:30:50"
    assert format_user_time(timestamp, 600) == "Mar 26, 2025 00:30:50"


def test_tag_sessions_merge_users_newest_first():
    users = ["alice@example.com", "bot-farm-7", "reseller-42"]

    sessions = data.tag_sessions("checkout-flow", users, NOW)

    owners = {data.decode_session_id(s["session_id"]).user_id for s in sessions}
    starts = [first_event_ms(s) for s in sessions]
    assert len(sessions) == 100
    assert all("checkout-flow" in s["tags"] for s in sessions)
    assert len(owners) > 1
    assert starts == sorted(starts, reverse=True)


def test_unknown_tag_has_no_sessions():
    assert data.tag_sessions("no-such-tag", data.DEMO_USER_IDS, NOW) == []


def test_naive_now_is_rejected():
    with pytest.raises(ValueError, match="aware"):
        data.user_sessions("alice@example.com", datetime(2026, 11, 20))


def test_newest_100_built_lazily():
    # bot-farm-7 has about 288 sessions a day over months of history. The
    # newest 100 must cost one or two days of it, not the whole history.
    clear_caches()
    sessions = data.user_sessions("bot-farm-7", NOW)

    assert len(sessions) == 100
    assert data._day_starts.cache_info().misses <= 2
    assert data._assessment.cache_info().misses == 100

import copy
import logging
from datetime import UTC, datetime

import pytest

from roundtable_sync.errors import InvalidResponseError
from roundtable_sync.parsing import (
    Event,
    parse_events,
    parse_session,
    parse_session_list,
)

USER_SESSIONS = {
    "user_id": "user-456",
    "sessions": [
        {
            "session_id": "abc123def456",
            "tags": ["intake-survey", "checkout-flow"],
            "risk_score": 75,
            "risk_explanation": (
                "Multiple bot behaviors detected including programmatic typing "
                "and lack of corrections"
            ),
            "recommended_action": "Manual review or require additional verification",
            "user_logs": [
                {
                    "action": "Navigated to /dashboard",
                    "user_time": "Mar 25, 2025 14:30:50",
                    "unix_timestamp": 1743055850000,
                }
            ],
            "biometric_checks": {
                "agent_behavior": "Not detected",
                "programmatic_typing": "Detected",
                "teleporting_mouse": "Not detected",
                "no_corrections": "Detected",
                "all_pasted": "Unknown",
                "jump_scrolling": "Detected",
                "centered_clicks": "Detected",
                "programmatic_clicking": "Not detected",
                "external_input": "Not detected",
            },
            "device_checks": {
                "bot": "Detected",
                "virtual_machine": "Not detected",
                "software_renderer": "Not detected",
                "vpn": "Detected",
                "tor": "Not detected",
                "location_spoofing": "Unknown",
            },
        }
    ],
}

# An older list item: no recommended_action and fewer checks.
TAG_SESSIONS_OLDER_CHECKS = {
    "tag": "checkout-flow",
    "sessions": [
        {
            "session_id": "abc123def456",
            "tags": ["intake-survey", "checkout-flow"],
            "risk_score": 75,
            "risk_explanation": (
                "Multiple bot behaviors detected including programmatic typing "
                "and lack of corrections"
            ),
            "user_logs": [
                {
                    "action": "Navigated to /dashboard",
                    "user_time": "Mar 25, 2025 14:30:50",
                    "unix_timestamp": 1743055850000,
                }
            ],
            "biometric_checks": {
                "agent_behavior": "Not detected",
                "programmatic_typing": "Detected",
                "teleporting_mouse": "Not detected",
                "no_corrections": "Detected",
                "all_pasted": "Unknown",
                "jump_scrolling": "Detected",
                "centered_clicks": "Detected",
            },
            "device_checks": {
                "bot": "Detected",
                "virtual_machine": "Not detected",
                "vpn": "Detected",
                "tor": "Not detected",
                "location_spoofing": "Unknown",
            },
        }
    ],
}

SESSION_EVENTS = {
    "session_id": "abc123def456",
    "event_count": 3,
    "events": [
        {
            "action": "Signed in",
            "user_time": "Mar 25, 2025 14:30:45",
            "unix_timestamp": 1743055845000,
        },
        {
            "action": "Navigated to /dashboard",
            "user_time": "Mar 25, 2025 14:30:50",
            "unix_timestamp": 1743055850000,
        },
        {
            "action": 'Clicked "Update credit card"',
            "user_time": "Mar 25, 2025 14:32:15",
            "unix_timestamp": 1743055935000,
        },
    ],
}


def user_sessions_with(**fields):
    """Return the user sessions sample with fields of its session replaced."""
    payload = copy.deepcopy(USER_SESSIONS)
    payload["sessions"][0].update(fields)
    return payload


def parse_one(**fields):
    result = parse_session_list(user_sessions_with(**fields), "user_id")
    return result.sessions[0], result.warnings


def test_user_sessions_sample():
    result = parse_session_list(copy.deepcopy(USER_SESSIONS), "user_id")

    session = result.sessions[0]
    assert result.owner == "user-456"
    assert result.warnings == []
    assert len(result.sessions) == 1
    assert session.session_id == "abc123def456"
    assert session.tags == ["intake-survey", "checkout-flow"]
    assert session.risk_score == 75
    assert session.risk_explanation.startswith("Multiple bot behaviors")
    assert session.recommended_action == (
        "Manual review or require additional verification"
    )
    assert session.biometric_checks["external_input"] == "Not detected"
    assert len(session.biometric_checks) == 9
    assert session.device_checks["software_renderer"] == "Not detected"
    assert session.user_id is None
    assert session.raw == USER_SESSIONS["sessions"][0]


def test_user_logs_sample():
    session, _ = parse_one()

    assert session.user_logs == [
        Event(
            action="Navigated to /dashboard",
            user_time="Mar 25, 2025 14:30:50",
            unix_timestamp=1743055850000,
        )
    ]
    assert session.earliest_log_time == datetime(2025, 3, 27, 6, 10, 50, tzinfo=UTC)


def test_tag_sessions_older_checks():
    result = parse_session_list(copy.deepcopy(TAG_SESSIONS_OLDER_CHECKS), "tag")

    session = result.sessions[0]
    assert result.owner == "checkout-flow"
    assert result.warnings == []
    assert session.recommended_action is None
    assert "external_input" not in session.biometric_checks
    assert "software_renderer" not in session.device_checks
    assert session.device_checks["vpn"] == "Detected"


def test_events_sample():
    result = parse_events(copy.deepcopy(SESSION_EVENTS))

    assert result.session_id == "abc123def456"
    assert result.event_count == 3
    assert result.warnings == []
    assert [event.action for event in result.events] == [
        "Signed in",
        "Navigated to /dashboard",
        'Clicked "Update credit card"',
    ]
    assert result.events[0].timestamp == datetime(2025, 3, 27, 6, 10, 45, tzinfo=UTC)


def test_event_timestamp_keeps_milliseconds():
    event = Event(action=None, user_time=None, unix_timestamp=1743055845123)

    assert event.timestamp == datetime(2025, 3, 27, 6, 10, 45, 123000, tzinfo=UTC)


def test_event_timestamp_none():
    event = Event(action=None, user_time=None, unix_timestamp=None)

    assert event.timestamp is None


@pytest.mark.parametrize(
    "value", ["75", 75.0, 75.5, True, False, -1, 101, [75], {"score": 75}]
)
def test_risk_score_invalid_becomes_none(value):
    session, warnings = parse_one(risk_score=value)

    assert session.risk_score is None
    assert len(warnings) == 1
    assert "abc123def456" in warnings[0]
    assert repr(value) in warnings[0]


@pytest.mark.parametrize("value", [0, 100, 49])
def test_risk_score_bounds_kept(value):
    session, warnings = parse_one(risk_score=value)

    assert session.risk_score == value
    assert warnings == []


def test_missing_and_null_fields_stay_none():
    payload = {
        "user_id": "u1",
        "sessions": [{"session_id": "s1", "tags": None, "risk_score": None}],
    }

    result = parse_session_list(payload, "user_id")

    session = result.sessions[0]
    assert result.warnings == []
    assert session.tags is None
    assert session.risk_score is None
    assert session.risk_explanation is None
    assert session.recommended_action is None
    assert session.biometric_checks is None
    assert session.device_checks is None
    assert session.user_logs is None
    assert session.earliest_log_time is None


def test_unknown_action_and_checks_kept_verbatim():
    session, warnings = parse_one(
        recommended_action="Escalate to fraud team",
        biometric_checks={"eye_tracking": "Partially detected"},
    )

    assert warnings == []
    assert session.recommended_action == "Escalate to fraud team"
    assert session.biometric_checks == {"eye_tracking": "Partially detected"}


def test_check_with_non_string_status_dropped():
    session, warnings = parse_one(
        device_checks={"bot": "Detected", "vpn": True, "tor": None}
    )

    assert session.device_checks == {"bot": "Detected"}
    assert len(warnings) == 2
    assert "'vpn'" in warnings[0]
    assert "'tor'" in warnings[1]


def test_checks_not_an_object():
    session, warnings = parse_one(biometric_checks=["Detected"])

    assert session.biometric_checks is None
    assert len(warnings) == 1


def test_non_string_tags_dropped():
    session, warnings = parse_one(tags=["vip", 7, None, "checkout"])

    assert session.tags == ["vip", "checkout"]
    assert len(warnings) == 2
    assert "7" in warnings[0]


def test_tags_not_a_list():
    session, warnings = parse_one(tags="vip")

    assert session.tags is None
    assert len(warnings) == 1


def test_text_field_of_wrong_type():
    session, warnings = parse_one(risk_explanation=42, recommended_action=["x"])

    assert session.risk_explanation is None
    assert session.recommended_action is None
    assert len(warnings) == 2


@pytest.mark.parametrize(
    "item",
    [
        "abc",
        None,
        {"risk_score": 10},
        {"session_id": ""},
        {"session_id": 12},
        {"session_id": None},
    ],
)
def test_malformed_session_skipped(item):
    payload = user_sessions_with()
    payload["sessions"].insert(0, item)

    result = parse_session_list(payload, "user_id")

    assert [session.session_id for session in result.sessions] == ["abc123def456"]
    assert len(result.warnings) == 1
    assert "user-456" in result.warnings[0]


def test_duplicate_sessions_last_wins():
    payload = {
        "user_id": "u1",
        "sessions": [
            {"session_id": "s1", "risk_score": 10},
            {"session_id": "s2", "risk_score": 20},
            {"session_id": "s1", "risk_score": 90},
            {"session_id": "s1", "risk_score": 95},
        ],
    }

    result = parse_session_list(payload, "user_id")

    assert [session.session_id for session in result.sessions] == ["s1", "s2"]
    assert result.sessions[0].risk_score == 95
    assert len(result.warnings) == 1
    assert "'s1'" in result.warnings[0]
    assert "3 times" in result.warnings[0]


@pytest.mark.parametrize("payload", [[], "sessions", None, 3])
def test_session_list_body_not_an_object(payload):
    with pytest.raises(InvalidResponseError):
        parse_session_list(payload, "user_id")


@pytest.mark.parametrize("sessions", [None, {}, "s1", 1])
def test_session_list_sessions_not_a_list(sessions):
    payload = {"user_id": "u1", "sessions": sessions}

    with pytest.raises(InvalidResponseError, match="'sessions'"):
        parse_session_list(payload, "user_id")


def test_session_list_without_sessions_field():
    with pytest.raises(InvalidResponseError):
        parse_session_list({"user_id": "u1"}, "user_id")


def test_owner_not_a_string():
    result = parse_session_list({"user_id": 5, "sessions": []}, "user_id")

    assert result.owner is None
    assert len(result.warnings) == 1


def test_warnings_logged_once_with_ids(caplog):
    caplog.set_level(logging.WARNING, logger="roundtable_sync.parsing")

    result = parse_session_list(user_sessions_with(risk_score="high"), "user_id")

    assert len(caplog.records) == 1
    assert caplog.records[0].levelno == logging.WARNING
    assert caplog.records[0].getMessage() == result.warnings[0]
    assert "user-456" in result.warnings[0]
    assert "abc123def456" in result.warnings[0]


def test_report_parsed_with_user_id():
    payload = copy.deepcopy(USER_SESSIONS["sessions"][0])
    payload["user_id"] = "user-456"

    session = parse_session(payload)

    assert session.user_id == "user-456"
    assert session.session_id == "abc123def456"
    assert session.risk_score == 75


def test_report_invalid_score_logged(caplog):
    caplog.set_level(logging.WARNING, logger="roundtable_sync.parsing")

    session = parse_session({"session_id": "s1", "risk_score": 250})

    assert session.risk_score is None
    assert len(caplog.records) == 1
    assert "'s1'" in caplog.records[0].getMessage()


@pytest.mark.parametrize(
    "payload",
    [[], None, "s1", {"risk_score": 3}, {"session_id": ""}, {"session_id": 7}],
)
def test_report_unusable(payload):
    with pytest.raises(InvalidResponseError):
        parse_session(payload)


@pytest.mark.parametrize("timestamp", ["1743055845000", 1743055845000.0, True])
def test_event_timestamp_not_int(timestamp):
    payload = copy.deepcopy(SESSION_EVENTS)
    payload["events"][0]["unix_timestamp"] = timestamp

    result = parse_events(payload)

    assert result.events[0].unix_timestamp is None
    assert result.events[0].action == "Signed in"
    assert len(result.warnings) == 1
    assert "abc123def456" in result.warnings[0]


def test_event_timestamp_out_of_datetime_range():
    payload = copy.deepcopy(SESSION_EVENTS)
    payload["events"][0]["unix_timestamp"] = 10**20

    result = parse_events(payload)

    assert result.events[0].unix_timestamp is None
    assert len(result.warnings) == 1


def test_event_not_an_object_dropped():
    payload = copy.deepcopy(SESSION_EVENTS)
    payload["events"].append("Clicked")
    payload["event_count"] = 4

    result = parse_events(payload)

    assert len(result.events) == 3
    assert len(result.warnings) == 1


def test_event_count_mismatch_warns():
    payload = copy.deepcopy(SESSION_EVENTS)
    payload["event_count"] = 5

    result = parse_events(payload)

    assert result.event_count == 5
    assert len(result.warnings) == 1


def test_event_count_not_int():
    payload = copy.deepcopy(SESSION_EVENTS)
    payload["event_count"] = "3"

    result = parse_events(payload)

    assert result.event_count is None
    assert len(result.warnings) == 1


@pytest.mark.parametrize("events", [None, {}, "x"])
def test_events_not_a_list(events):
    with pytest.raises(InvalidResponseError, match="'events'"):
        parse_events({"session_id": "s1", "events": events})


def test_events_body_not_an_object():
    with pytest.raises(InvalidResponseError):
        parse_events([])


def test_user_logs_not_a_list():
    session, warnings = parse_one(user_logs={"action": "x"})

    assert session.user_logs is None
    assert len(warnings) == 1


def test_earliest_log_time_skips_missing_timestamps():
    logs = [
        {"action": "b", "unix_timestamp": 1743055850000},
        {"action": "a", "unix_timestamp": 1743055845000},
        {"action": "c"},
    ]

    session, _ = parse_one(user_logs=logs)

    assert session.earliest_log_time == datetime(2025, 3, 27, 6, 10, 45, tzinfo=UTC)


def test_nul_and_surrogates_replaced_everywhere():
    payload = {
        "user_id": "u\x001",
        "sessions": [
            {
                "session_id": "s\x001",
                "tags": ["a\x00b"],
                "risk_explanation": "lone \ud800 high",
                "biometric_checks": {"k\x00": "v\udfff"},
                "user_logs": [{"action": "x\x00", "unix_timestamp": 0}],
            }
        ],
    }

    result = parse_session_list(payload, "user_id")

    session = result.sessions[0]
    assert result.owner == "u\ufffd1"
    assert session.session_id == "s\ufffd1"
    assert session.tags == ["a\ufffdb"]
    assert session.risk_explanation == "lone \ufffd high"
    assert session.biometric_checks == {"k\ufffd": "v\ufffd"}
    assert session.user_logs[0].action == "x\ufffd"
    assert session.raw["tags"] == ["a\ufffdb"]
    assert len(result.warnings) == 1
    assert "'s\ufffd1' of user 'u\ufffd1' contains 6 NUL" in result.warnings[0]


def test_clean_session_kept_without_warning():
    payload = {"user_id": "u1", "sessions": [{"session_id": "s1", "tags": ["é"]}]}

    result = parse_session_list(payload, "user_id")

    assert result.warnings == []
    assert result.sessions[0].raw == {"session_id": "s1", "tags": ["é"]}


def test_events_nul_replaced_with_warning():
    payload = {"session_id": "s1", "events": [{"action": "a\x00", "user_time": "\x00"}]}

    result = parse_events(payload)

    assert [event.action for event in result.events] == ["a\ufffd"]
    assert result.events[0].user_time == "\ufffd"
    assert len(result.warnings) == 1
    assert "'s1' contain 2 NUL" in result.warnings[0]

"""The client against the Roundtable sandbox over real HTTP, fault by fault.

Retry waits go to a fake sleep. Faults that hold the connection use short
real read timeouts, so each test takes at most about a second.
"""

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from roundtable_sync import errors
from roundtable_sync.client import RoundtableClient

USER_ID = "alice@example.com"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class FakeSleep:
    def __init__(self):
        self.waits = []

    def __call__(self, seconds):
        self.waits.append(seconds)


@pytest.fixture
def sleep():
    return FakeSleep()


@pytest.fixture
def client(sandbox, sleep):
    client = make_client(sandbox, sleep)
    yield client
    client.close()


def make_client(sandbox, sleep, **options):
    settings = {
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "deadline": 30.0,
        "sleep": sleep,
        "now": lambda: NOW,
        "rng": lambda: 0.5,
    }
    settings.update(options)
    return RoundtableClient(sandbox.key, sandbox.url, **settings)


def api_requests(sandbox):
    return [request for request in sandbox.requests if request.path.startswith("/v1/")]


# Normal responses


def test_user_sessions(client):
    result = client.user_sessions(USER_ID)

    assert result.owner == USER_ID
    assert result.warnings == []
    assert len(result.sessions) > 0
    assert all(0 <= s.risk_score <= 100 for s in result.sessions)


def test_non_ascii_user_id(client, sandbox):
    user_id = "josé.garcía@example.es"

    result = client.user_sessions(user_id)

    assert result.owner == user_id
    assert api_requests(sandbox)[0].path == (
        "/v1/users/jos%C3%A9.garc%C3%ADa%40example.es/sessions"
    )


@pytest.mark.parametrize("user_id", ["a/b", "what?", "#1", "100%", "a b", ".", ".."])
def test_awkward_user_id_round_trip(client, user_id):
    result = client.user_sessions(user_id)

    assert result.owner == user_id


def test_session_report_and_events(client):
    session_id = client.user_sessions(USER_ID).sessions[0].session_id

    report = client.session_report(session_id)
    events = client.session_events(session_id)

    assert report.session_id == session_id
    assert report.user_id == USER_ID
    assert events.session_id == session_id
    assert events.warnings == []


def test_tag_sessions(client):
    session = client.user_sessions(USER_ID).sessions[0]
    tag = session.tags[0]

    result = client.tag_sessions(tag)

    assert result.owner == tag
    assert all(tag in s.tags for s in result.sessions)


def test_wrong_key_rejected(sandbox, sleep):
    client = RoundtableClient("not-the-key", sandbox.url, sleep=sleep)

    with pytest.raises(errors.KeyRejectedError) as raised:
        client.user_sessions(USER_ID)

    assert raised.value.status == 401
    assert "not-the-key" not in str(raised.value)


# Faults


def test_rate_limit_retried(client, sandbox, sleep):
    sandbox.faults.add("rate_limit", count=1, retry_after=7)

    result = client.user_sessions(USER_ID)

    assert result.owner == USER_ID
    assert sleep.waits == [7.0]


def test_rate_limit_http_date(client, sandbox, sleep):
    sandbox.faults.add(
        "rate_limit", count=1, retry_after="Fri, 20 Nov 2026 12:00:20 GMT"
    )

    client.user_sessions(USER_ID)

    assert sleep.waits == [20.0]


def test_rate_limit_long_wait_deferred(client, sandbox, sleep):
    sandbox.faults.add("rate_limit", retry_after=3600)

    with pytest.raises(errors.RateLimitedError) as raised:
        client.user_sessions(USER_ID)

    assert raised.value.retry_at == NOW + timedelta(hours=1)
    assert sleep.waits == []
    assert len(api_requests(sandbox)) == 1


def test_rate_limit_exhausted(client, sandbox, sleep):
    sandbox.faults.add("rate_limit", retry_after=2)

    with pytest.raises(errors.RateLimitedError) as raised:
        client.user_sessions(USER_ID)

    assert len(api_requests(sandbox)) == 4
    assert sleep.waits == [2.0, 2.0, 2.0]
    assert raised.value.retry_at == NOW + timedelta(seconds=2)


def test_server_error_retried(client, sandbox, sleep):
    sandbox.faults.add("server_error", count=2, status=502)

    result = client.user_sessions(USER_ID)

    assert result.owner == USER_ID
    assert sleep.waits == [1.5, 2.5]


def test_server_error_exhausted(client, sandbox):
    sandbox.faults.add("server_error", status=500)

    with pytest.raises(errors.ServerError) as raised:
        client.user_sessions(USER_ID)

    assert raised.value.status == 500
    assert len(api_requests(sandbox)) == 4


def test_server_error_retry_after(client, sandbox, sleep):
    sandbox.faults.add("server_error", count=1, retry_after=4)

    client.user_sessions(USER_ID)

    assert sleep.waits == [4.0]


def test_fault_of_other_user_ignored(client, sandbox):
    sandbox.faults.add("server_error", user_id="bot-farm-7")

    result = client.user_sessions(USER_ID)

    assert result.owner == USER_ID


def test_slow_response_retried(sandbox, sleep):
    sandbox.faults.add("slow", count=1, delay=2)
    client = make_client(sandbox, sleep, read_timeout=0.3)

    result = client.user_sessions(USER_ID)

    assert result.owner == USER_ID
    assert sleep.waits == [1.5]


def test_slow_response_exhausted(sandbox, sleep):
    sandbox.faults.add("slow", delay=2)
    client = make_client(sandbox, sleep, read_timeout=0.3, max_attempts=2)

    with pytest.raises(errors.ApiTimeoutError):
        client.user_sessions(USER_ID)


def test_stalled_body_times_out(sandbox, sleep):
    sandbox.faults.add("stall", delay=5)
    client = make_client(sandbox, sleep, read_timeout=0.3, max_attempts=1)
    started = time.monotonic()

    with pytest.raises(errors.ApiTimeoutError):
        client.user_sessions(USER_ID)

    assert time.monotonic() - started < 2.0


def test_stalled_body_stopped_at_deadline(sandbox, sleep):
    sandbox.faults.add("stall", delay=5)
    client = make_client(sandbox, sleep, read_timeout=5.0, deadline=0.5)
    started = time.monotonic()

    with pytest.raises(errors.ApiTimeoutError):
        client.user_sessions(USER_ID)

    assert time.monotonic() - started < 2.0


def test_truncated_body_retried(client, sandbox):
    sandbox.faults.add("truncated", count=1)

    result = client.user_sessions(USER_ID)

    assert result.owner == USER_ID
    assert len(api_requests(sandbox)) == 2


def test_truncated_body_exhausted(client, sandbox):
    sandbox.faults.add("truncated")

    with pytest.raises(errors.ApiConnectionError):
        client.user_sessions(USER_ID)


def test_not_json(client, sandbox):
    sandbox.faults.add("not_json")

    with pytest.raises(errors.InvalidResponseError):
        client.user_sessions(USER_ID)

    assert len(api_requests(sandbox)) == 1


def test_wrong_shape(client, sandbox):
    sandbox.faults.add("wrong_shape")

    with pytest.raises(errors.InvalidResponseError, match="'sessions'"):
        client.user_sessions(USER_ID)


@pytest.mark.parametrize("content_length", [True, False])
def test_oversized(sandbox, sleep, content_length):
    sandbox.faults.add("oversized", size_bytes=500_000, content_length=content_length)
    client = make_client(sandbox, sleep, max_response_bytes=100_000)

    with pytest.raises(errors.ResponseTooLargeError):
        client.user_sessions(USER_ID)

    assert len(api_requests(sandbox)) == 1


def test_oversized_within_cap_parsed(client, sandbox):
    sandbox.faults.add("oversized", size_bytes=50_000)

    result = client.user_sessions(USER_ID)

    # The filler repeats one session, which the parser reduces to one.
    assert len(result.sessions) == 1
    assert len(result.warnings) == 1
    assert "appears" in result.warnings[0]


def test_key_revoked(client, sandbox):
    sandbox.faults.add("key_revoked")

    with pytest.raises(errors.KeyRejectedError, match="ROUNDTABLE_API_KEY"):
        client.user_sessions(USER_ID)

    assert len(api_requests(sandbox)) == 1


def test_not_found(client, sandbox):
    sandbox.faults.add("not_found")

    with pytest.raises(errors.NotFoundError, match=USER_ID):
        client.user_sessions(USER_ID)


def test_same_origin_redirect_followed(client, sandbox):
    sandbox.faults.add(
        "redirect", count=1, location="/v1/users/sessions?userId=alice%40example.com"
    )

    result = client.user_sessions(USER_ID)

    assert result.owner == USER_ID
    assert api_requests(sandbox)[1].path == (
        "/v1/users/sessions?userId=alice%40example.com"
    )


def test_other_origin_redirect_rejected(client, sandbox):
    other = sandbox.url.replace("127.0.0.1", "localhost")
    sandbox.faults.add("redirect", status=307, location=f"{other}/v1/users/x/sessions")

    with pytest.raises(errors.RedirectRejectedError):
        client.user_sessions(USER_ID)

    assert len(api_requests(sandbox)) == 1


def test_sessions_response_keeps_body(client):
    response = client.user_sessions_response(USER_ID)

    assert json.loads(response.content)["user_id"] == USER_ID
    assert response.parse().owner == USER_ID


def test_sessions_response_not_json_fails_on_parse(client, sandbox):
    sandbox.faults.add("not_json")

    response = client.user_sessions_response(USER_ID)

    with pytest.raises(errors.InvalidResponseError, match="not valid JSON"):
        response.parse()
    assert len(api_requests(sandbox)) == 1


def test_sessions_response_oversized(sandbox, sleep):
    sandbox.faults.add("oversized", size_bytes=500_000, content_length=False)
    client = make_client(sandbox, sleep, max_response_bytes=100_000)

    with pytest.raises(errors.ResponseTooLargeError):
        client.user_sessions_response(USER_ID)

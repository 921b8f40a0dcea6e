import http.client
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from django.core.management import CommandError, call_command

from roundtable_sync.management.commands.roundtable_sandbox import Command
from roundtable_sync.sandbox import SandboxServer, data
from roundtable_sync.sandbox.faults import parse_spec
from roundtable_sync.sandbox.responses import oversized_body

TIMEOUT = 5
ODD_USER_ID = "a/b?c#d%e f+é 名"


def get(sandbox, path, key="sandbox-key", **kwargs):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.get(sandbox.url + path, headers=headers, timeout=TIMEOUT, **kwargs)


def control(sandbox, method, body=None, key="sandbox-key"):
    return requests.request(
        method,
        sandbox.url + "/_sandbox/faults",
        headers={"Authorization": f"Bearer {key}"},
        json=body,
        timeout=TIMEOUT,
    )


def raw_get(sandbox, path):
    """GET with http.client, which reports a short body as IncompleteRead."""
    connection = http.client.HTTPConnection(sandbox.host, sandbox.port, timeout=TIMEOUT)
    connection.request("GET", path, headers={"Authorization": "Bearer sandbox-key"})
    return connection, connection.getresponse()


def user_path(user_id):
    return f"/v1/users/{quote(user_id, safe='')}/sessions"


def a_session_id(sandbox, user_id="alice@example.com"):
    return data.user_sessions(user_id, sandbox.clock())[0]["session_id"]


# Authentication


def test_right_key_accepted(sandbox):
    response = get(sandbox, user_path("alice@example.com"))

    assert response.status_code == 200


@pytest.mark.parametrize("key", ["wrong-key", "sandbox-key-and-more", ""])
def test_wrong_or_missing_key_rejected(sandbox, key):
    response = get(sandbox, user_path("alice@example.com"), key=key)

    assert response.status_code == 401
    assert response.json() == {"error": "invalid or missing API key"}


def test_key_needs_bearer_scheme(sandbox):
    response = requests.get(
        sandbox.url + user_path("alice@example.com"),
        headers={"Authorization": "Basic sandbox-key"},
        timeout=TIMEOUT,
    )

    assert response.status_code == 401


def test_requests_are_recorded_with_key_redacted(sandbox):
    get(sandbox, user_path(ODD_USER_ID))

    [request] = sandbox.requests
    assert request.method == "GET"
    assert request.path == user_path(ODD_USER_ID)
    assert request.status == 200
    assert request.headers["Authorization"] == "REDACTED"


def test_request_log_omits_key(sandbox, caplog):
    caplog.set_level(logging.INFO, logger="roundtable_sync.sandbox")

    get(sandbox, user_path("alice@example.com"))
    get(sandbox, user_path("alice@example.com"), key="wrong-key")

    assert f"GET {user_path('alice@example.com')} 200" in caplog.text
    assert f"GET {user_path('alice@example.com')} 401" in caplog.text
    assert "sandbox-key" not in caplog.text
    assert "wrong-key" not in caplog.text


# Endpoints


def test_user_sessions_path_form(sandbox):
    response = get(sandbox, user_path("alice@example.com"))

    body = response.json()
    assert response.headers["Content-Type"] == "application/json"
    assert body["user_id"] == "alice@example.com"
    assert body["sessions"] == data.user_sessions("alice@example.com", sandbox.clock())


def test_user_sessions_query_form(sandbox):
    response = get(sandbox, "/v1/users/sessions", params={"userId": ODD_USER_ID})

    body = response.json()
    assert body["user_id"] == ODD_USER_ID
    assert body["sessions"] == data.user_sessions(ODD_USER_ID, sandbox.clock())


def test_user_sessions_encoded_id_is_one_segment(sandbox):
    response = get(sandbox, user_path(ODD_USER_ID))

    assert response.status_code == 200
    assert response.json()["user_id"] == ODD_USER_ID


def test_user_sessions_busy_user_capped(sandbox):
    response = get(sandbox, user_path("bot-farm-7"))

    assert len(response.json()["sessions"]) == 100


def test_unknown_user_gets_own_history(sandbox):
    response = get(sandbox, user_path("someone-new@example.com"))

    assert response.status_code == 200
    assert response.json()["user_id"] == "someone-new@example.com"


def test_missing_query_parameter_is_400(sandbox):
    response = get(sandbox, "/v1/users/sessions")

    assert response.status_code == 400
    assert "userId" in response.json()["error"]


def test_invalid_utf8_segment_is_400(sandbox):
    response = get(sandbox, "/v1/users/%FF%FE/sessions")

    assert response.status_code == 400


def test_empty_user_segment_is_404(sandbox):
    response = get(sandbox, "/v1/users//sessions")

    assert response.status_code == 404


def test_unknown_path_is_404(sandbox):
    response = get(sandbox, "/v2/users/alice/sessions")

    assert response.status_code == 404
    assert response.json() == {"error": "not found"}


def test_non_get_method_is_405(sandbox):
    response = requests.post(
        sandbox.url + user_path("alice@example.com"),
        headers={"Authorization": "Bearer sandbox-key"},
        timeout=TIMEOUT,
    )

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"


def test_report_path_form(sandbox):
    session_id = a_session_id(sandbox, ODD_USER_ID)

    response = get(sandbox, f"/v1/sessions/{session_id}/report")

    body = response.json()
    assert body["user_id"] == ODD_USER_ID
    assert body["session_id"] == session_id
    assert "risk_score" in body


def test_report_query_form(sandbox):
    session_id = a_session_id(sandbox)

    response = get(sandbox, "/v1/sessions/report", params={"sessionId": session_id})

    assert response.json()["session_id"] == session_id


@pytest.mark.parametrize("session_id", ["abc123def456", "no/such?id#x%y z", "é"])
def test_unknown_session_report_is_404(sandbox, session_id):
    response = get(sandbox, f"/v1/sessions/{quote(session_id, safe='')}/report")

    assert response.status_code == 404
    assert response.json() == {"error": "session not found"}


def test_unknown_session_events_is_404(sandbox):
    response = get(sandbox, "/v1/sessions/abc123def456/events")

    assert response.status_code == 404


def test_events_shape(sandbox):
    session_id = a_session_id(sandbox)

    response = get(sandbox, f"/v1/sessions/{session_id}/events")

    body = response.json()
    assert body["session_id"] == session_id
    assert body["event_count"] == len(body["events"])
    assert set(body["events"][0]) == {"action", "user_time", "unix_timestamp"}


def test_events_grow_as_clock_moves(sandbox):
    session_id = a_session_id(sandbox)
    first, last = data.session_period(session_id)
    sandbox.clock.now = first

    early = get(sandbox, f"/v1/sessions/{session_id}/events").json()
    sandbox.clock.now = last
    complete = get(sandbox, f"/v1/sessions/{session_id}/events").json()

    assert early["event_count"] == 1
    assert complete["event_count"] > 1


def test_tag_sessions_include_users_asked_about(sandbox):
    get(sandbox, user_path(ODD_USER_ID))

    response = get(sandbox, "/v1/tags/login/sessions")

    body = response.json()
    expected = data.tag_sessions(
        "login", [*data.DEMO_USER_IDS, ODD_USER_ID], sandbox.clock()
    )
    assert body["tag"] == "login"
    assert body["sessions"] == expected


def test_tag_with_encoded_characters(sandbox):
    tag = "check out/é?"

    response = get(sandbox, f"/v1/tags/{quote(tag, safe='')}/sessions")

    assert response.json() == {"tag": tag, "sessions": []}


# Faults


def test_rate_limit_with_seconds(sandbox):
    sandbox.faults.add("rate_limit", retry_after=2)

    response = get(sandbox, user_path("alice@example.com"))

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"


def test_rate_limit_with_http_date(sandbox):
    date = "Wed, 21 Oct 2026 07:28:00 GMT"
    sandbox.faults.add("rate_limit", retry_after=date)

    response = get(sandbox, user_path("alice@example.com"))

    assert response.headers["Retry-After"] == date


def test_rate_limit_without_retry_after(sandbox):
    sandbox.faults.add("rate_limit")

    response = get(sandbox, user_path("alice@example.com"))

    assert response.status_code == 429
    assert "Retry-After" not in response.headers


def test_server_error_default_503(sandbox):
    sandbox.faults.add("server_error")

    response = get(sandbox, user_path("alice@example.com"))

    assert response.status_code == 503


def test_server_error_custom_status_and_retry_after(sandbox):
    sandbox.faults.add("server_error", status=500, retry_after=7)

    response = get(sandbox, user_path("alice@example.com"))

    assert response.status_code == 500
    assert response.headers["Retry-After"] == "7"


def test_slow_delays_full_response(sandbox):
    sandbox.faults.add("slow", delay=0.3)
    started = time.monotonic()

    response = get(sandbox, user_path("alice@example.com"))

    assert time.monotonic() - started >= 0.3
    assert response.json()["user_id"] == "alice@example.com"


def test_stall_sends_part_then_closes(sandbox):
    sandbox.faults.add("stall", delay=0.5)
    started = time.monotonic()

    connection, response = raw_get(sandbox, user_path("alice@example.com"))
    with pytest.raises(http.client.IncompleteRead) as error:
        response.read()
    connection.close()

    assert response.status == 200
    assert time.monotonic() - started >= 0.5
    assert 0 < len(error.value.partial) < int(response.headers["Content-Length"])


def test_stall_times_out_short_read_timeout(sandbox):
    sandbox.faults.add("stall", delay=1)

    with pytest.raises(requests.exceptions.ConnectionError, match="timed out"):
        requests.get(
            sandbox.url + user_path("alice@example.com"),
            headers={"Authorization": "Bearer sandbox-key"},
            timeout=(TIMEOUT, 0.2),
        )


def test_stop_ends_stalled_response(sandbox):
    sandbox.faults.add("stall", delay=30)
    connection, response = raw_get(sandbox, user_path("alice@example.com"))
    started = time.monotonic()

    sandbox.stop()

    with pytest.raises(http.client.IncompleteRead):
        response.read()
    connection.close()
    assert time.monotonic() - started < 5


def test_truncated_body_shorter_than_length(sandbox):
    sandbox.faults.add("truncated")

    connection, response = raw_get(sandbox, user_path("alice@example.com"))
    with pytest.raises(http.client.IncompleteRead) as error:
        response.read()
    connection.close()

    assert error.value.expected > 0
    assert len(error.value.partial) == int(response.headers["Content-Length"]) // 2


def test_not_json_body(sandbox):
    sandbox.faults.add("not_json")

    response = get(sandbox, user_path("alice@example.com"))

    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def test_wrong_shape_is_valid_json(sandbox):
    sandbox.faults.add("wrong_shape")

    response = get(sandbox, user_path("alice@example.com"))

    body = response.json()
    assert "sessions" not in body
    assert "user_id" not in body


def test_oversized_body_has_exact_size_and_parses(sandbox):
    sandbox.faults.add("oversized", size_bytes=200_000)

    response = get(sandbox, user_path("alice@example.com"))

    assert int(response.headers["Content-Length"]) == 200_000
    assert len(response.content) == 200_000
    assert len(response.json()["sessions"]) > 100


def test_oversized_body_without_length(sandbox):
    sandbox.faults.add("oversized", size_bytes=100_000, content_length=False)

    response = get(sandbox, user_path("alice@example.com"))

    assert "Content-Length" not in response.headers
    assert len(response.content) == 100_000


@pytest.mark.parametrize("size", [64, 65, 500, 70_000, 1_000_003])
def test_oversized_body_exact_for_any_size(size):
    body = b"".join(oversized_body(size))

    assert len(body) == size
    assert isinstance(json.loads(body)["sessions"], list)


def test_key_revoked_rejects_right_key(sandbox):
    sandbox.faults.add("key_revoked")

    response = get(sandbox, user_path("alice@example.com"))

    assert response.status_code == 401


def test_not_found_fault(sandbox):
    sandbox.faults.add("not_found")

    response = get(sandbox, user_path("alice@example.com"))

    assert response.status_code == 404


def test_redirect_fault(sandbox):
    sandbox.faults.add("redirect", location="http://127.0.0.1:9/elsewhere")

    response = get(sandbox, user_path("alice@example.com"), allow_redirects=False)

    assert response.status_code == 302
    assert response.headers["Location"] == "http://127.0.0.1:9/elsewhere"


def test_fault_for_one_user_spares_others(sandbox):
    sandbox.faults.add("rate_limit", user_id=ODD_USER_ID)

    other = get(sandbox, user_path("alice@example.com"))
    target = get(sandbox, user_path(ODD_USER_ID))
    by_query = get(sandbox, "/v1/users/sessions", params={"userId": ODD_USER_ID})

    assert other.status_code == 200
    assert target.status_code == 429
    assert by_query.status_code == 429


def test_user_fault_applies_to_their_sessions(sandbox):
    sandbox.faults.add("server_error", user_id="bot-farm-7")
    theirs = a_session_id(sandbox, "bot-farm-7")
    others = a_session_id(sandbox, "alice@example.com")

    report = get(sandbox, f"/v1/sessions/{theirs}/report")
    events = get(sandbox, f"/v1/sessions/{theirs}/events")
    other = get(sandbox, f"/v1/sessions/{others}/report")

    assert report.status_code == 503
    assert events.status_code == 503
    assert other.status_code == 200


def test_user_fault_spares_tag_endpoint(sandbox):
    sandbox.faults.add("server_error", user_id="bot-farm-7")

    response = get(sandbox, "/v1/tags/login/sessions")

    assert response.status_code == 200


def test_counted_fault_expires(sandbox):
    sandbox.faults.add("server_error", count=2)

    statuses = [
        get(sandbox, user_path("alice@example.com")).status_code for _ in range(3)
    ]

    assert statuses == [503, 503, 200]
    assert sandbox.faults.list() == []


def test_counted_user_fault_counts_only_that_user(sandbox):
    sandbox.faults.add("rate_limit", user_id="bot-farm-7", count=1)

    first_other = get(sandbox, user_path("alice@example.com"))
    target = get(sandbox, user_path("bot-farm-7"))
    target_again = get(sandbox, user_path("bot-farm-7"))

    assert first_other.status_code == 200
    assert target.status_code == 429
    assert target_again.status_code == 200


def test_first_added_fault_applies(sandbox):
    sandbox.faults.add("not_found", count=1)
    sandbox.faults.add("server_error", count=1)

    first = get(sandbox, user_path("alice@example.com"))
    second = get(sandbox, user_path("alice@example.com"))

    assert first.status_code == 404
    assert second.status_code == 503


def test_faults_clear(sandbox):
    sandbox.faults.add("server_error")

    removed = sandbox.faults.clear()

    assert removed == 1
    assert get(sandbox, user_path("alice@example.com")).status_code == 200


def test_latency_delays_every_request():
    server = SandboxServer(port=0, latency=0.3)
    server.start()
    try:
        started = time.monotonic()
        response = requests.get(
            server.url + "/_sandbox/faults",
            headers={"Authorization": "Bearer sandbox-key"},
            timeout=TIMEOUT,
        )
        elapsed = time.monotonic() - started
    finally:
        server.stop()

    assert response.status_code == 200
    assert elapsed >= 0.3


# Fault rules in-process


@pytest.mark.parametrize(
    ("kind", "params", "named"),
    [
        ("bogus", {}, "bogus"),
        ("rate_limit", {"retry_after": "soon"}, "soon"),
        ("rate_limit", {"retry_after": -1}, "-1"),
        ("rate_limit", {"delay": 1}, "delay"),
        ("server_error", {"status": 404}, "404"),
        ("slow", {"delay": "x"}, "'x'"),
        ("stall", {"delay": -2}, "-2"),
        ("oversized", {"size_bytes": 10}, "10"),
        ("oversized", {"content_length": "maybe"}, "maybe"),
        ("redirect", {}, "location"),
        ("redirect", {"location": "/x", "status": 200}, "200"),
        ("redirect", {"location": "/x\r\nSet-Cookie: a=b"}, "line break"),
    ],
)
def test_invalid_fault_rejected(sandbox, kind, params, named):
    with pytest.raises(ValueError, match=named):
        sandbox.faults.add(kind, **params)


@pytest.mark.parametrize("count", [0, -1, "x", 1.5])
def test_invalid_count_rejected(sandbox, count):
    with pytest.raises(ValueError, match="count"):
        sandbox.faults.add("rate_limit", count=count)


def test_fault_list_shows_remaining_count(sandbox):
    sandbox.faults.add("rate_limit", user_id="bot-farm-7", count=3, retry_after=1)
    get(sandbox, user_path("bot-farm-7"))

    [rule] = sandbox.faults.list()

    assert rule["kind"] == "rate_limit"
    assert rule["user_id"] == "bot-farm-7"
    assert rule["count"] == 2
    assert rule["params"] == {"retry_after": "1"}


# Control endpoints


def test_control_add_list_clear(sandbox):
    spec = {"kind": "rate_limit", "user_id": "bot-farm-7", "count": 1}

    added = control(sandbox, "POST", {**spec, "params": {"retry_after": 3}})
    listed = control(sandbox, "GET")
    cleared = control(sandbox, "DELETE")

    assert added.status_code == 201
    assert added.json()["fault"]["params"] == {"retry_after": "3"}
    assert listed.json()["faults"] == [added.json()["fault"]]
    assert cleared.json() == {"cleared": 1}
    assert sandbox.faults.list() == []


def test_control_fault_applies(sandbox):
    control(sandbox, "POST", {"kind": "not_found", "count": 1})

    first = get(sandbox, user_path("alice@example.com"))
    second = get(sandbox, user_path("alice@example.com"))

    assert first.status_code == 404
    assert second.status_code == 200


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"kind": "bogus"}, "bogus"),
        ({"kind": "slow", "params": {"delay": "soon"}}, "soon"),
        ({"kind": "slow", "params": {"speed": 1}}, "speed"),
        ({"kind": "slow", "params": {"count": 1}}, "count"),
        ({"kind": "slow", "count": 0}, "count"),
        ({"kind": "slow", "color": "red"}, "color"),
        ({"params": {}}, "kind"),
        (["slow"], "['slow']"),
    ],
)
def test_control_rejects_bad_spec(sandbox, body, named):
    response = control(sandbox, "POST", body)

    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/plain")
    assert named in response.text
    assert sandbox.faults.list() == []


def test_control_rejects_invalid_json(sandbox):
    response = requests.post(
        sandbox.url + "/_sandbox/faults",
        headers={"Authorization": "Bearer sandbox-key"},
        data=b"{not json",
        timeout=TIMEOUT,
    )

    assert response.status_code == 400
    assert "invalid JSON" in response.text


def test_control_needs_key(sandbox):
    response = control(sandbox, "POST", {"kind": "not_found"}, key="wrong-key")

    assert response.status_code == 401
    assert sandbox.faults.list() == []


def test_control_ignores_faults(sandbox):
    sandbox.faults.add("server_error")

    response = control(sandbox, "GET")

    assert response.status_code == 200


# Management command


def test_parse_spec_with_params():
    spec = parse_spec("rate_limit:user_id=bot-farm-7,count=3,retry_after=2")

    assert spec == {
        "kind": "rate_limit",
        "user_id": "bot-farm-7",
        "count": "3",
        "params": {"retry_after": "2"},
    }


def test_parse_spec_keeps_comma_in_http_date():
    spec = parse_spec("rate_limit:retry_after=Wed, 21 Oct 2026 07:28:00 GMT")

    assert spec["params"] == {"retry_after": "Wed, 21 Oct 2026 07:28:00 GMT"}


def test_parse_spec_kind_only():
    assert parse_spec("not_json") == {"kind": "not_json", "params": {}}


@pytest.mark.parametrize(
    ("option", "named"),
    [
        ("bogus", "bogus"),
        ("slow:delay", "delay"),
        ("slow:delay=never", "never"),
        ("rate_limit:count=0", "count"),
    ],
)
def test_command_rejects_bad_fault(option, named):
    with pytest.raises(CommandError, match=named):
        call_command("roundtable_sandbox", "--port=0", "--fault", option)


@pytest.mark.parametrize(
    "arguments", [["--port=70000"], ["--port=x"], ["--latency-ms=-5"], ["--key="]]
)
def test_command_rejects_bad_options(arguments):
    with pytest.raises(CommandError):
        call_command("roundtable_sandbox", *arguments)


@pytest.fixture
def running_command():
    command = Command()
    output = io.StringIO()
    arguments = [
        "--port=0",
        "--key=other-key",
        "--latency-ms=10",
        "--fault=rate_limit:count=1,retry_after=1",
        "--fault=server_error:user_id=bot-farm-7",
    ]
    thread = threading.Thread(
        target=call_command,
        args=(command, *arguments),
        kwargs={"stdout": output},
        daemon=True,
    )
    thread.start()
    assert command.ready.wait(TIMEOUT)
    yield command, output, thread
    command.stop()
    thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_command_serves_with_options(running_command):
    command, output, _ = running_command
    server = command.server

    first = get(server, user_path("alice@example.com"), key="other-key")
    second = get(server, user_path("alice@example.com"), key="other-key")
    bot = get(server, user_path("bot-farm-7"), key="other-key")
    default_key = get(server, user_path("alice@example.com"))

    assert first.status_code == 429
    assert second.status_code == 200
    assert bot.status_code == 503
    assert default_key.status_code == 401
    assert server.latency == 0.01
    assert f"ROUNDTABLE_API_URL={server.url}" in output.getvalue()
    assert "other-key" not in output.getvalue()


def test_command_stop_closes_port(running_command):
    command, _, thread = running_command
    url = command.server.url

    command.stop()
    thread.join(TIMEOUT)

    assert not thread.is_alive()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, timeout=TIMEOUT)


@pytest.mark.process
def test_command_stops_on_sigterm():
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "roundtable_sandbox", "--port=0", "--key=k-123"],
        cwd=Path(__file__).resolve().parent.parent,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first_line = process.stdout.readline()
        url = first_line.split()[-1]
        response = requests.get(
            url + user_path("alice@example.com"),
            headers={"Authorization": "Bearer k-123"},
            timeout=TIMEOUT,
        )
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)

    assert response.status_code == 200
    assert process.returncode == 0
    assert "stopped" in errors
    assert "k-123" not in errors


def test_clock_moves_sessions(sandbox):
    before = get(sandbox, user_path("bot-farm-7")).json()["sessions"]
    sandbox.clock.advance(timedelta(hours=6))

    after = get(sandbox, user_path("bot-farm-7")).json()["sessions"]

    assert after[0]["session_id"] != before[0]["session_id"]


def test_control_rejects_large_body(sandbox):
    connection = http.client.HTTPConnection(sandbox.host, sandbox.port, timeout=TIMEOUT)
    # Only the headers, because the server must respond before reading the body.
    connection.putrequest("POST", "/_sandbox/faults")
    connection.putheader("Authorization", "Bearer sandbox-key")
    connection.putheader("Content-Length", "70000")
    connection.endheaders()

    response = connection.getresponse()
    text = response.read().decode()
    connection.close()

    assert response.status == 413
    assert "70000" in text

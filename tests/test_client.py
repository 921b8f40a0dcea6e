import gzip
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured

from roundtable_sync import errors
from roundtable_sync.client import RoundtableClient

KEY = "sk-test-4f9a2c"
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
USER_SESSIONS = {
    "user_id": "user-456",
    "sessions": [{"session_id": "abc123def456", "risk_score": 75}],
}


@dataclass
class ReceivedRequest:
    path: str
    headers: dict


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        scripted = self.server.scripted
        scripted.requests.append(ReceivedRequest(self.path, dict(self.headers)))
        if scripted.replies:
            action = scripted.replies.pop(0)
        else:
            action = reply(599, b"no scripted reply left")
        try:
            action(self)
        except OSError:
            # The client hung up, as the deadline and size tests expect.
            self.close_connection = True

    def log_message(self, format, *args):
        pass


class ScriptedServer:
    """An HTTP server on 127.0.0.1 that plays scripted replies in order."""

    def __init__(self):
        self.replies = []
        self.requests = []
        self.released = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.httpd.scripted = self
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, args=(0.05,), daemon=True
        )
        self.thread.start()

    @property
    def url(self):
        host, port = self.httpd.server_address
        return f"http://{host}:{port}"

    def add(self, *actions):
        self.replies.extend(actions)

    def stop(self):
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def reply(status=200, body=b"", headers=()):
    def send(handler):
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return send


def json_reply(payload, status=200, headers=()):
    return reply(status, json.dumps(payload).encode(), headers)


def close_delimited(body, headers=()):
    """Send a body without Content-Length, ended by closing the connection."""

    def send(handler):
        handler.send_response(200)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(body)
        handler.close_connection = True

    return send


def stall(seconds, *, headers_after=None, body=b"", content_length=1000):
    """Hold the request, then close. With headers_after, send headers and body first."""

    def send(handler):
        if headers_after is not None:
            handler.server.scripted.released.wait(headers_after)
            handler.send_response(200)
            handler.send_header("Content-Length", str(content_length))
            handler.end_headers()
            handler.wfile.write(body)
        handler.server.scripted.released.wait(seconds)
        handler.close_connection = True

    return send


def trickle(body, interval):
    """Send the body one byte at a time, one byte per interval."""

    def send(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for byte in body:
            if handler.server.scripted.released.wait(interval):
                return
            handler.wfile.write(bytes([byte]))

    return send


def truncated(body):
    def send(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body) + 100))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(body)
        handler.close_connection = True

    return send


class FakeClock:
    """monotonic() and sleep() that advance together and record the sleeps."""

    def __init__(self, tick=0.0):
        self.now = 1000.0
        self.tick = tick
        self.sleeps = []

    def monotonic(self):
        self.now += self.tick
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class RecordingSession(requests.Session):
    def __init__(self):
        super().__init__()
        self.calls = []

    def get(self, url, **kwargs):
        self.calls.append((url, kwargs))
        return super().get(url, **kwargs)


@pytest.fixture
def server():
    scripted = ScriptedServer()
    yield scripted
    scripted.stop()


@pytest.fixture
def clock():
    return FakeClock()


def make_client(server, clock, **options):
    settings = {
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "deadline": 60.0,
        "monotonic": clock.monotonic,
        "sleep": clock.sleep,
        "now": lambda: NOW,
        "rng": lambda: 0.5,
    }
    settings.update(options)
    return RoundtableClient(KEY, server.url, **settings)


def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# Requests on the wire


def test_user_sessions_request(server, clock):
    server.add(json_reply(USER_SESSIONS))
    client = make_client(server, clock)

    result = client.user_sessions("user-456")

    request = server.requests[0]
    assert request.path == "/v1/users/user-456/sessions"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Accept"] == "application/json"
    assert result.owner == "user-456"
    assert result.sessions[0].risk_score == 75


@pytest.mark.parametrize(
    ("user_id", "path"),
    [
        ("a/b?c#d%e f", "/v1/users/a%2Fb%3Fc%23d%25e%20f/sessions"),
        ("a/../b", "/v1/users/a%2F..%2Fb/sessions"),
        ("%2E%2E", "/v1/users/%252E%252E/sessions"),
        ("José 東京", "/v1/users/Jos%C3%A9%20%E6%9D%B1%E4%BA%AC/sessions"),
        ("...", "/v1/users/.../sessions"),
    ],
)
def test_user_id_is_one_path_segment(server, clock, user_id, path):
    server.add(json_reply({"user_id": user_id, "sessions": []}))
    client = make_client(server, clock)

    client.user_sessions(user_id)

    assert server.requests[0].path == path


@pytest.mark.parametrize(
    ("user_id", "path"),
    [(".", "/v1/users/sessions?userId=."), ("..", "/v1/users/sessions?userId=..")],
)
def test_dot_user_id_uses_query_form(server, clock, user_id, path):
    server.add(json_reply({"user_id": user_id, "sessions": []}))
    client = make_client(server, clock)

    client.user_sessions(user_id)

    assert server.requests[0].path == path


def test_dot_session_report_uses_query_form(server, clock):
    server.add(json_reply({"session_id": "..", "user_id": "u1"}))
    client = make_client(server, clock)

    session = client.session_report("..")

    assert server.requests[0].path == "/v1/sessions/report?sessionId=.."
    assert session.user_id == "u1"


def test_session_report_request(server, clock):
    server.add(json_reply({"session_id": "s/1", "user_id": "u1", "risk_score": 40}))
    client = make_client(server, clock)

    session = client.session_report("s/1")

    assert server.requests[0].path == "/v1/sessions/s%2F1/report"
    assert session.risk_score == 40


def test_session_events_request(server, clock):
    events = {"session_id": "s 1", "event_count": 0, "events": []}
    server.add(json_reply(events))
    client = make_client(server, clock)

    result = client.session_events("s 1")

    assert server.requests[0].path == "/v1/sessions/s%201/events"
    assert result.session_id == "s 1"


def test_tag_sessions_request(server, clock):
    server.add(json_reply({"tag": "check?out", "sessions": []}))
    client = make_client(server, clock)

    result = client.tag_sessions("check?out")

    assert server.requests[0].path == "/v1/tags/check%3Fout/sessions"
    assert result.owner == "check?out"


@pytest.mark.parametrize("method", ["session_events", "tag_sessions"])
@pytest.mark.parametrize("value", [".", ".."])
def test_dot_id_without_query_form_rejected(server, clock, method, value):
    client = make_client(server, clock)

    with pytest.raises(errors.InvalidIdError) as raised:
        getattr(client, method)(value)

    assert isinstance(raised.value, ValueError)
    assert repr(value) in str(raised.value)
    assert server.requests == []


@pytest.mark.parametrize(
    "method", ["user_sessions", "session_events", "session_report", "tag_sessions"]
)
def test_empty_id_rejected(server, clock, method):
    client = make_client(server, clock)

    with pytest.raises(ValueError, match="empty"):
        getattr(client, method)("")

    assert server.requests == []


def test_netrc_does_not_replace_key(server, clock, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password other-secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    server.add(json_reply(USER_SESSIONS))
    client = make_client(server, clock)

    client.user_sessions("user-456")

    assert server.requests[0].headers["Authorization"] == f"Bearer {KEY}"


def test_request_timeouts_and_stream(server, clock):
    server.add(json_reply(USER_SESSIONS))
    session = RecordingSession()
    client = make_client(
        server, clock, connect_timeout=2.0, read_timeout=3.0, session=session
    )

    client.user_sessions("user-456")

    url, options = session.calls[0]
    assert url == f"{server.url}/v1/users/user-456/sessions"
    assert options["timeout"] == (2.0, 3.0)
    assert options["stream"] is True
    assert options["allow_redirects"] is False


def test_request_timeouts_capped_at_time_left(server, clock):
    server.add(json_reply(USER_SESSIONS))
    session = RecordingSession()
    client = make_client(
        server, clock, read_timeout=30.0, deadline=1.5, session=session
    )

    client.user_sessions("user-456")

    _, options = session.calls[0]
    assert options["timeout"] == (1.5, 1.5)


# Retries


def test_server_error_retried_with_backoff(server, clock):
    server.add(reply(503), reply(502), json_reply(USER_SESSIONS))
    client = make_client(server, clock)

    result = client.user_sessions("user-456")

    assert result.owner == "user-456"
    assert len(server.requests) == 3
    assert clock.sleeps == [1.5, 2.5]


def test_backoff_capped_at_max_retry_wait(server, clock):
    server.add(reply(500), reply(500), json_reply(USER_SESSIONS))
    client = make_client(server, clock, max_retry_wait=2.0)

    client.user_sessions("user-456")

    assert clock.sleeps == [1.5, 2.0]


def test_retry_after_seconds_honoured(server, clock):
    server.add(reply(429, headers=[("Retry-After", "7")]), json_reply(USER_SESSIONS))
    client = make_client(server, clock)

    client.user_sessions("user-456")

    assert clock.sleeps == [7.0]


def test_retry_after_http_date_honoured(server, clock):
    when = format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    server.add(reply(503, headers=[("Retry-After", when)]), json_reply(USER_SESSIONS))
    client = make_client(server, clock)

    client.user_sessions("user-456")

    assert clock.sleeps == [30.0]


def test_long_retry_after_deferred(server, clock):
    server.add(reply(429, headers=[("Retry-After", "120")]))
    client = make_client(server, clock, deadline=1000.0)

    with pytest.raises(errors.RateLimitedError) as raised:
        client.user_sessions("user-456")

    assert raised.value.retry_at == NOW + timedelta(seconds=120)
    assert raised.value.deferred
    assert "deferred until 2026-05-01 12:02:00 UTC" in str(raised.value)
    assert clock.sleeps == []
    assert len(server.requests) == 1


def test_long_retry_after_on_server_error_deferred(server, clock):
    server.add(reply(503, headers=[("Retry-After", "600")]))
    client = make_client(server, clock, deadline=1000.0)

    with pytest.raises(errors.ServerError) as raised:
        client.user_sessions("user-456")

    assert raised.value.retry_at == NOW + timedelta(seconds=600)
    assert raised.value.status == 503
    assert clock.sleeps == []


def test_huge_retry_after_capped(server, clock):
    server.add(reply(429, headers=[("Retry-After", "9" * 400)]))
    client = make_client(server, clock)

    with pytest.raises(errors.RateLimitedError) as raised:
        client.user_sessions("user-456")

    assert raised.value.retry_at == NOW + timedelta(days=1)


def test_past_retry_after_date_means_no_wait(server, clock):
    when = format_datetime(NOW - timedelta(minutes=5), usegmt=True)
    server.add(reply(503, headers=[("Retry-After", when)]), json_reply(USER_SESSIONS))
    client = make_client(server, clock)

    client.user_sessions("user-456")

    assert clock.sleeps == [0.0]


def test_invalid_retry_after_uses_backoff(server, clock):
    server.add(reply(503, headers=[("Retry-After", "soon")]), json_reply(USER_SESSIONS))
    client = make_client(server, clock)

    client.user_sessions("user-456")

    assert clock.sleeps == [1.5]


def test_rate_limit_exhausted(server, clock):
    server.add(*[reply(429, headers=[("Retry-After", "5")])] * 4)
    client = make_client(server, clock, max_attempts=4)

    with pytest.raises(errors.RateLimitedError) as raised:
        client.user_sessions("user-456")

    assert len(server.requests) == 4
    assert clock.sleeps == [5.0, 5.0, 5.0]
    assert raised.value.retry_at == NOW + timedelta(seconds=5)
    assert "all 4 attempts" in str(raised.value)
    assert "'user-456'" in str(raised.value)


def test_server_error_exhausted(server, clock):
    server.add(*[reply(502)] * 3)
    client = make_client(server, clock, max_attempts=3)

    with pytest.raises(errors.ServerError) as raised:
        client.user_sessions("user-456")

    assert len(server.requests) == 3
    assert raised.value.status == 502
    assert raised.value.retry_at is None


def test_wait_past_deadline_not_slept(server, clock):
    retry_after = [("Retry-After", "8")]
    server.add(reply(503, headers=retry_after), reply(503, headers=retry_after))
    client = make_client(server, clock, deadline=10.0)

    with pytest.raises(errors.ServerError) as raised:
        client.user_sessions("user-456")

    assert clock.sleeps == [8.0]
    assert len(server.requests) == 2
    assert "deadline" in str(raised.value)


@pytest.mark.parametrize("status", [400, 405, 409, 422])
def test_other_client_error_not_retried(server, clock, status):
    server.add(reply(status))
    client = make_client(server, clock)

    with pytest.raises(errors.RequestRejectedError) as raised:
        client.user_sessions("user-456")

    assert raised.value.status == status
    assert len(server.requests) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("status", [401, 403])
def test_key_rejected(server, clock, status):
    server.add(reply(status))
    client = make_client(server, clock)

    with pytest.raises(errors.KeyRejectedError) as raised:
        client.user_sessions("user-456")

    assert raised.value.status == status
    assert "ROUNDTABLE_API_KEY" in str(raised.value)
    assert KEY not in str(raised.value)
    assert len(server.requests) == 1


def test_not_found(server, clock):
    server.add(reply(404))
    client = make_client(server, clock)

    with pytest.raises(errors.NotFoundError) as raised:
        client.session_events("s-9")

    assert "'s-9'" in str(raised.value)
    assert len(server.requests) == 1


def test_connection_failure_retried_then_raised(clock):
    client = RoundtableClient(
        KEY,
        closed_port_url(),
        max_attempts=3,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        rng=lambda: 0.0,
    )

    with pytest.raises(errors.ApiConnectionError) as raised:
        client.user_sessions("user-456")

    assert clock.sleeps == [1.0, 2.0]
    assert "ROUNDTABLE_API_URL" in str(raised.value)


def test_stalled_headers_retried(server, clock):
    server.add(stall(5), json_reply(USER_SESSIONS))
    client = make_client(server, clock, read_timeout=0.2)

    result = client.user_sessions("user-456")

    assert result.owner == "user-456"
    assert clock.sleeps == [1.5]


def test_request_timeouts_exhausted(server, clock):
    server.add(stall(5), stall(5))
    client = make_client(server, clock, read_timeout=0.2, max_attempts=2)

    with pytest.raises(errors.ApiTimeoutError) as raised:
        client.user_sessions("user-456")

    assert len(server.requests) == 2
    assert raised.value.retry_at is None


def test_truncated_body_retried(server, clock):
    server.add(truncated(b'{"user_id": "u'), json_reply(USER_SESSIONS))
    client = make_client(server, clock)

    result = client.user_sessions("user-456")

    assert result.owner == "user-456"
    assert len(server.requests) == 2


def test_retry_logged_without_key(server, clock, caplog):
    caplog.set_level(logging.WARNING, logger="roundtable_sync.client")
    server.add(reply(503), json_reply(USER_SESSIONS))
    client = make_client(server, clock)

    client.user_sessions("user-456")

    message = caplog.records[0].getMessage()
    assert len(caplog.records) == 1
    assert "user sessions" in message
    assert "'user-456'" in message
    assert "attempt 1 of 4" in message
    assert "1.5 s" in message
    assert KEY not in message


# Deadline and slow bodies


def test_trickling_body_stopped_at_deadline(server):
    body = json.dumps(USER_SESSIONS).encode()
    server.add(trickle(body, 0.02))
    # Each clock reading advances one second, so the deadline passes after a
    # few socket reads, long before the body is complete.
    clock = FakeClock(tick=1.0)
    client = make_client(server, clock, deadline=5.0)

    with pytest.raises(errors.ApiTimeoutError) as raised:
        client.user_sessions("user-456")

    assert "deadline" in str(raised.value)
    assert len(server.requests) == 1


def test_stalled_body_times_out(server, clock):
    server.add(stall(5, headers_after=0, body=b'{"user_id": '))
    client = make_client(server, clock, read_timeout=0.3, max_attempts=1)
    started = time.monotonic()

    with pytest.raises(errors.ApiTimeoutError):
        client.user_sessions("user-456")

    assert time.monotonic() - started < 2.0


def test_body_read_timeout_shrinks_to_deadline(server):
    # Headers arrive after 0.7 s, then the body stalls. The read timeout of
    # the body must be the 0.3 s left, not the 1.0 s granted at the start.
    server.add(stall(5, headers_after=0.7, body=b"{"))
    client = RoundtableClient(KEY, server.url, read_timeout=5.0, deadline=1.0)
    started = time.monotonic()

    with pytest.raises(errors.ApiTimeoutError):
        client.user_sessions("user-456")

    assert time.monotonic() - started < 1.4


# Response size and content


def test_content_length_over_cap(server, clock):
    # The body never comes: only the announced length can raise the error.
    server.add(stall(5, headers_after=0, content_length=10**9))
    client = make_client(server, clock, max_response_bytes=1000, read_timeout=1.0)

    with pytest.raises(errors.ResponseTooLargeError) as raised:
        client.user_sessions("user-456")

    assert "Content-Length: 1000000000" in str(raised.value)
    assert "ROUNDTABLE_MAX_RESPONSE_MB" in str(raised.value)
    assert len(server.requests) == 1


def test_streamed_body_over_cap(server, clock):
    payload = {"user_id": "u1", "sessions": [], "padding": "x" * 5000}
    server.add(close_delimited(json.dumps(payload).encode()))
    client = make_client(server, clock, max_response_bytes=1000)

    with pytest.raises(errors.ResponseTooLargeError):
        client.user_sessions("u1")


def test_decompressed_body_over_cap(server, clock):
    payload = {"user_id": "u1", "sessions": [], "padding": " " * 200_000}
    compressed = gzip.compress(json.dumps(payload).encode())
    server.add(reply(200, compressed, headers=[("Content-Encoding", "gzip")]))
    client = make_client(server, clock, max_response_bytes=100_000)

    with pytest.raises(errors.ResponseTooLargeError):
        client.user_sessions("u1")


def test_gzip_body_decoded(server, clock):
    compressed = gzip.compress(json.dumps(USER_SESSIONS).encode())
    server.add(reply(200, compressed, headers=[("Content-Encoding", "gzip")]))
    client = make_client(server, clock)

    result = client.user_sessions("user-456")

    assert result.owner == "user-456"


@pytest.mark.parametrize(
    "body",
    [
        b"<html>Bad gateway</html>",
        b"\xff\xfe{}",
        b"",
        b'{"user_id": "u1", "sessions": [], "x": NaN}',
        b"[1]",
    ],
)
def test_invalid_body_not_retried(server, clock, body):
    server.add(reply(200, body))
    client = make_client(server, clock)

    with pytest.raises(errors.InvalidResponseError):
        client.user_sessions("user-456")

    assert len(server.requests) == 1


# Redirects


def test_same_origin_redirect_followed(server, clock):
    server.add(
        reply(302, headers=[("Location", "/v2/users/user-456/sessions")]),
        json_reply(USER_SESSIONS),
    )
    client = make_client(server, clock)

    result = client.user_sessions("user-456")

    assert result.owner == "user-456"
    assert server.requests[1].path == "/v2/users/user-456/sessions"
    assert server.requests[1].headers["Authorization"] == f"Bearer {KEY}"


def test_other_origin_redirect_rejected(server, clock):
    other = ScriptedServer()
    try:
        server.add(reply(307, headers=[("Location", f"{other.url}/v1/steal")]))
        client = make_client(server, clock)

        with pytest.raises(errors.RedirectRejectedError) as raised:
            client.user_sessions("user-456")

        assert other.requests == []
        assert KEY not in str(raised.value)
    finally:
        other.stop()


def test_redirect_to_other_scheme_rejected(server, clock):
    location = server.url.replace("http://", "https://") + "/v1/x"
    server.add(reply(301, headers=[("Location", location)]))
    client = make_client(server, clock)

    with pytest.raises(errors.RedirectRejectedError):
        client.user_sessions("user-456")


def test_redirect_hops_limited(server, clock):
    server.add(*[reply(302, headers=[("Location", "/v1/again")])] * 4)
    client = make_client(server, clock)

    with pytest.raises(errors.RedirectRejectedError):
        client.user_sessions("user-456")

    assert len(server.requests) == 4


# Construction


def test_repr_hides_key(server, clock):
    client = make_client(server, clock)

    assert KEY not in repr(client)
    assert KEY not in str(client)
    assert server.url in repr(client)


@pytest.mark.parametrize("key", ["", "two words", "line\nbreak", None])
def test_invalid_key_rejected(key):
    with pytest.raises(ValueError):
        RoundtableClient(key, "https://api.roundtable.ai")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://api.roundtable.ai",
        "https://api.roundtable.ai?x=1",
        "https://user:pass@api.roundtable.ai",
    ],
)
def test_invalid_base_url_rejected(url):
    with pytest.raises(ValueError):
        RoundtableClient(KEY, url)


def test_from_settings(settings):
    settings.ROUNDTABLE_API_KEY = KEY
    settings.ROUNDTABLE_API_URL = "https://api.poh.org"
    settings.ROUNDTABLE_CONNECT_TIMEOUT = 3.0
    settings.ROUNDTABLE_READ_TIMEOUT = 20.0
    settings.ROUNDTABLE_REQUEST_DEADLINE = 45.0
    settings.ROUNDTABLE_MAX_ATTEMPTS = 2
    settings.ROUNDTABLE_MAX_RESPONSE_MB = 1.5

    client = RoundtableClient.from_settings(read_timeout=9.0)

    assert client.base_url == "https://api.poh.org"
    assert client.connect_timeout == 3.0
    assert client.read_timeout == 9.0
    assert client.deadline == 45.0
    assert client.max_attempts == 2
    assert client.max_response_bytes == 1572864


def test_from_settings_without_key(settings):
    settings.ROUNDTABLE_API_KEY = ""

    with pytest.raises(ImproperlyConfigured, match="ROUNDTABLE_API_KEY"):
        RoundtableClient.from_settings()

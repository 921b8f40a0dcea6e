import hashlib
import hmac
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import certifi
import pytest
import urllib3
from django.core import mail

from alerts import tasks, urlcheck
from alerts.email import clean_subject
from alerts.forms import WebhookForm
from alerts.models import AlertDelivery, AlertRule, RuleKind, WebhookEndpoint
from alerts.urlcheck import UnsafeWebhookURL, validate_webhook_url
from alerts.webhooks import MAX_ATTEMPTS, SIGNATURE_HEADER
from roundtable_sync.models import WatchedUser
from roundtable_sync.parsing import parse_session_list
from roundtable_sync.signals import sessions_stored
from roundtable_sync.store import store_sessions
from tests import payloads

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SECRET = "test-secret"


class Receiver:
    """A real HTTP server on 127.0.0.1 that records requests and checks signatures."""

    def __init__(self, statuses=(), delay=0.0, secret=SECRET):
        self.statuses = list(statuses)
        self.delay = delay
        self.secret = secret
        self.requests = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                body = self.rfile.read(length)
                receiver.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                        "signature_valid": receiver.verify(self.headers, body),
                    }
                )
                time.sleep(receiver.delay)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/redirected")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def verify(self, headers, body):
        fields = dict(
            part.split("=", 1) for part in headers[SIGNATURE_HEADER].split(",")
        )
        message = fields["t"].encode() + b"." + body
        expected = hmac.new(self.secret.encode(), message, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, fields["v1"])

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def allow_loopback(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_READ_TIMEOUT = 2.0


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(NOW, tick=False)
    return time_machine


@pytest.fixture
def watched():
    return WatchedUser.objects.create(user_id="alice@example.com")


def endpoint_for(url, **fields):
    endpoint = WebhookEndpoint.objects.create(
        name="SIEM", url=url, secret=SECRET, created_at=NOW, **fields
    )
    AlertRule.objects.get(kind=RuleKind.BLOCK_BAND).webhooks.add(endpoint)
    return endpoint


def raise_block_alert(watched, session_id="s1", score=90):
    listing = parse_session_list(
        payloads.user_sessions(
            watched.user_id, [payloads.session(session_id, risk_score=score)]
        ),
        "user_id",
    )
    stored = store_sessions(watched.user_id, listing.sessions, NOW)
    sessions_stored.send(
        sender=WatchedUser,
        watched_user=watched,
        stored=stored,
        first_sync=False,
        now=NOW,
    )


def attempts(endpoint):
    return list(endpoint.deliveries.order_by("attempt"))


# Delivery


def test_delivery_is_signed_and_recorded(watched, clock):
    with Receiver() as receiver:
        endpoint = endpoint_for(receiver.url)

        raise_block_alert(watched)

    [request] = receiver.requests
    assert request["signature_valid"] is True
    assert request["headers"][SIGNATURE_HEADER].startswith(f"t={int(NOW.timestamp())},")
    [delivery] = attempts(endpoint)
    assert delivery.succeeded is True
    assert delivery.status_code == 200
    assert delivery.finished_at == NOW


def test_payload_carries_alert_context(watched, clock):
    with Receiver() as receiver:
        endpoint_for(receiver.url)

        raise_block_alert(watched)

    body = json.loads(receiver.requests[0]["body"])
    assert body["kind"] == "block_band"
    assert body["user_id"] == "alice@example.com"
    assert body["session_id"] == "s1"
    assert body["score"] == 90
    assert body["band"] == "block"
    assert body["recommended_action"] == payloads.BASE_SESSION["recommended_action"]
    assert "vpn" in body["checks_detected"]
    assert body["url"] == "http://127.0.0.1:8000/sessions/detail/?id=s1"
    assert isinstance(body["id"], int)
    assert body["created_at"] == NOW.isoformat()


def test_wrong_secret_fails_verification(watched, clock):
    with Receiver(secret="another-secret") as receiver:
        endpoint_for(receiver.url)

        raise_block_alert(watched)

    assert receiver.requests[0]["signature_valid"] is False


def test_disabled_endpoint_gets_nothing(watched, clock):
    with Receiver() as receiver:
        endpoint_for(receiver.url, enabled=False)

        raise_block_alert(watched)

    assert receiver.requests == []


def test_repeated_poll_delivers_once(watched, clock):
    with Receiver() as receiver:
        endpoint_for(receiver.url)

        raise_block_alert(watched)
        raise_block_alert(watched, score=95)

    assert len(receiver.requests) == 1


# Failures and retries


def test_failed_attempt_schedules_retry_with_backoff(watched, clock):
    with Receiver(statuses=[500]) as receiver:
        endpoint = endpoint_for(receiver.url)

        raise_block_alert(watched)

    first, retry = attempts(endpoint)
    assert first.succeeded is False
    assert first.status_code == 500
    assert "HTTP 500" in first.error
    assert retry.attempt == 2
    assert retry.due_at == NOW + timedelta(minutes=1)
    assert retry.started_at is None


def test_retry_waits_until_due(watched, clock):
    with Receiver(statuses=[500]) as receiver:
        endpoint_for(receiver.url)
        raise_block_alert(watched)

        clock.move_to(NOW + timedelta(seconds=59), tick=False)
        queued = tasks.dispatch_deliveries()

    assert queued == 0
    assert len(receiver.requests) == 1


def test_retries_until_success(watched, clock):
    with Receiver(statuses=[500, 503]) as receiver:
        endpoint = endpoint_for(receiver.url)
        raise_block_alert(watched)

        clock.move_to(NOW + timedelta(minutes=1), tick=False)
        tasks.dispatch_deliveries()
        clock.move_to(NOW + timedelta(minutes=3), tick=False)
        tasks.dispatch_deliveries()

    assert len(receiver.requests) == 3
    assert all(r["signature_valid"] for r in receiver.requests)
    outcomes = [(d.attempt, d.status_code, d.succeeded) for d in attempts(endpoint)]
    assert outcomes == [(1, 500, False), (2, 503, False), (3, 200, True)]


def test_retries_stop_after_max_attempts(watched, clock):
    with Receiver(statuses=[500] * 10) as receiver:
        endpoint = endpoint_for(receiver.url)
        raise_block_alert(watched)

        for minute in (1, 3, 7, 15, 31, 63):
            clock.move_to(NOW + timedelta(minutes=minute), tick=False)
            tasks.dispatch_deliveries()

    assert len(receiver.requests) == MAX_ATTEMPTS
    assert len(attempts(endpoint)) == MAX_ATTEMPTS
    assert attempts(endpoint)[-1].succeeded is False


def test_claimed_attempt_is_not_sent_twice(watched, clock):
    with Receiver(statuses=[500]) as receiver:
        endpoint_for(receiver.url)
        raise_block_alert(watched)
        retry = AlertDelivery.objects.get(attempt=2)
        clock.move_to(NOW + timedelta(minutes=1), tick=False)

        tasks.deliver_webhook(retry.pk)
        tasks.deliver_webhook(retry.pk)

    assert len(receiver.requests) == 2


def test_redirect_is_a_failure_and_not_followed(watched, clock):
    with Receiver(statuses=[302]) as receiver:
        endpoint = endpoint_for(receiver.url)

        raise_block_alert(watched)

    assert [r["path"] for r in receiver.requests] == ["/hook"]
    first = attempts(endpoint)[0]
    assert first.succeeded is False
    assert first.status_code == 302
    assert "Redirects are not followed" in first.error


def test_slow_receiver_times_out(watched, clock, settings):
    settings.WEBHOOK_READ_TIMEOUT = 0.2
    with Receiver(delay=1.0) as receiver:
        endpoint = endpoint_for(receiver.url)

        raise_block_alert(watched)

    first = attempts(endpoint)[0]
    assert first.succeeded is False
    assert "Timeout" in first.error


# Address validation


DISALLOWED = [
    "http://10.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://localhost:8080/hook",
    "http://192.168.1.5/",
    "http://224.0.0.1/",
    "http://0.0.0.0/",
    "http://[::1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://100.64.0.1/",
]


@pytest.mark.parametrize("url", DISALLOWED)
def test_internal_addresses_are_rejected(url):
    with pytest.raises(UnsafeWebhookURL):
        validate_webhook_url(url)


@pytest.mark.parametrize(
    "url", ["ftp://203.0.113.9/", "file:///etc/passwd", "http:///x"]
)
def test_other_schemes_and_empty_hosts_are_rejected(url):
    with pytest.raises(UnsafeWebhookURL):
        validate_webhook_url(url)


def test_metadata_address_is_named():
    with pytest.raises(UnsafeWebhookURL, match="metadata"):
        validate_webhook_url("http://169.254.169.254/")


def test_public_address_is_accepted():
    validate_webhook_url("https://8.8.8.8/hook")


def test_every_resolved_address_must_be_public():
    with mock.patch.object(urlcheck, "resolve", autospec=True) as resolve:
        resolve.return_value = ["8.8.8.8", "10.1.2.3"]

        with pytest.raises(UnsafeWebhookURL, match="10.1.2.3"):
            validate_webhook_url("https://hooks.example.com/")


def test_allowed_host_skips_address_check(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["10.0.0.1"]

    validate_webhook_url("http://10.0.0.1/hook")


def no_connection():
    """Patch every urllib3 pool's request method, to show none is made."""
    return mock.patch.object(urllib3.HTTPConnectionPool, "urlopen", autospec=True)


@pytest.mark.parametrize("url", DISALLOWED[:4])
def test_send_rejects_before_connecting(watched, clock, url):
    endpoint = endpoint_for(url)

    with no_connection() as urlopen:
        raise_block_alert(watched)

    urlopen.assert_not_called()
    first = attempts(endpoint)[0]
    assert first.succeeded is False
    assert first.error.startswith("Rejected before sending")


# URLs that two parsers read differently, numeric IPv4 spellings, and IPv6
# addresses that reach an internal IPv4 address.
AMBIGUOUS = [
    "http://127.0.0.1:9\\@public.example/",
    "http://public.example\\@127.0.0.1/",
    "http://user:pass@public.example/",
    "http://public.example@127.0.0.1/",
    "http://public.example /",
    "http://public.example\t/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0x7f000001/",
    "http://0x7f.1/",
    "http://127.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::1%25lo]/",
    "http://[2002:7f00:1::]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
]


@pytest.fixture
def allow_public_example(settings):
    # Allowed so that an unsafe URL which passes the check skips DNS too: the
    # test then sends nothing outside the loopback interface.
    settings.WEBHOOK_ALLOWED_HOSTS = ["public.example"]


@pytest.mark.parametrize("url", AMBIGUOUS)
def test_ambiguous_urls_are_rejected(url, allow_public_example):
    with pytest.raises(UnsafeWebhookURL):
        validate_webhook_url(url)


@pytest.mark.parametrize("url", AMBIGUOUS)
def test_ambiguous_urls_are_rejected_at_save(url, allow_public_example):
    form = WebhookForm({"name": "x", "url": url, "enabled": "on"})

    assert form.is_valid() is False
    assert "url" in form.errors


@pytest.mark.parametrize("url", AMBIGUOUS)
def test_ambiguous_urls_are_rejected_at_send(watched, clock, url, allow_public_example):
    endpoint = endpoint_for(url)

    with no_connection() as urlopen:
        raise_block_alert(watched)

    urlopen.assert_not_called()
    first = attempts(endpoint)[0]
    assert first.succeeded is False
    assert first.error.startswith("Rejected before sending")


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}\\@public.example/hook",
        "http://public.example@127.0.0.1:{port}/hook",
    ],
)
def test_parser_confusion_does_not_reach_loopback(
    watched, clock, template, allow_public_example
):
    with Receiver() as receiver:
        endpoint = endpoint_for(template.format(port=receiver.server.server_port))

        raise_block_alert(watched)

    assert receiver.requests == []
    assert attempts(endpoint)[0].error.startswith("Rejected before sending")


def test_6to4_reaching_public_ipv4_is_accepted():
    validate_webhook_url("http://[2002:808:808::]/")


def test_error_names_embedded_ipv4():
    with pytest.raises(UnsafeWebhookURL, match="169.254.169.254, a cloud metadata"):
        validate_webhook_url("http://[2002:a9fe:a9fe::]/")


# Connecting to the checked address


def test_send_connects_to_checked_address(watched, clock):
    endpoint_for("http://hooks.example.com:8080/hook?x=1")

    with (
        mock.patch.object(urlcheck, "resolve", autospec=True) as resolve,
        mock.patch.object(urllib3, "HTTPConnectionPool", autospec=True) as pool,
    ):
        resolve.return_value = ["8.8.8.8"]
        pool.return_value.urlopen.return_value.status = 200
        raise_block_alert(watched)

    resolve.assert_called_once_with("hooks.example.com", 8080)
    assert pool.call_args.args == ("8.8.8.8", 8080)
    assert pool.call_args.kwargs["retries"] is False
    [call] = pool.return_value.urlopen.call_args_list
    assert call.args[:2] == ("POST", "/hook?x=1")
    assert call.kwargs["headers"]["Host"] == "hooks.example.com:8080"
    assert call.kwargs["redirect"] is False


def test_https_send_verifies_certificate_for_url_host(watched, clock, settings):
    settings.WEBHOOK_CONNECT_TIMEOUT = 3.0
    endpoint_for("https://hooks.example.com/hook")

    with (
        mock.patch.object(urlcheck, "resolve", autospec=True) as resolve,
        mock.patch.object(urllib3, "HTTPSConnectionPool", autospec=True) as pool,
    ):
        resolve.return_value = ["8.8.8.8"]
        pool.return_value.urlopen.return_value.status = 200
        raise_block_alert(watched)

    assert pool.call_args.args == ("8.8.8.8", 443)
    kwargs = pool.call_args.kwargs
    assert kwargs["server_hostname"] == "hooks.example.com"
    assert kwargs["assert_hostname"] == "hooks.example.com"
    assert kwargs["cert_reqs"] == "CERT_REQUIRED"
    assert kwargs["ca_certs"] == certifi.where()
    assert kwargs["timeout"].connect_timeout == 3.0
    assert kwargs["timeout"].read_timeout == 2.0
    headers = pool.return_value.urlopen.call_args.kwargs["headers"]
    assert headers["Host"] == "hooks.example.com"


def test_request_carries_url_host(watched, clock):
    with Receiver() as receiver:
        endpoint_for(receiver.url)

        raise_block_alert(watched)

    port = receiver.server.server_port
    assert receiver.requests[0]["headers"]["Host"] == f"127.0.0.1:{port}"


def test_allowed_host_name_is_delivered(watched, clock, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["localhost"]
    with Receiver() as receiver:
        port = receiver.server.server_port
        endpoint = endpoint_for(f"http://localhost:{port}/hook")

        raise_block_alert(watched)

    assert attempts(endpoint)[0].succeeded is True
    assert receiver.requests[0]["headers"]["Host"] == f"localhost:{port}"


def test_refused_address_falls_back_to_next(watched, clock, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["hooks.test"]
    with Receiver() as receiver:
        port = receiver.server.server_port
        endpoint = endpoint_for(f"http://hooks.test:{port}/hook")
        with mock.patch.object(urlcheck, "resolve", autospec=True) as resolve:
            # Nothing listens on 127.0.0.2, so that connection is refused.
            resolve.return_value = ["127.0.0.2", "127.0.0.1"]

            raise_block_alert(watched)

    assert attempts(endpoint)[0].succeeded is True
    assert len(receiver.requests) == 1


# E-mail


def test_alert_email_is_sent_to_rule_recipients(watched, clock):
    AlertRule.objects.filter(kind=RuleKind.BLOCK_BAND).update(
        email_recipients=["soc@example.com"]
    )

    raise_block_alert(watched)

    [message] = mail.outbox
    assert message.to == ["soc@example.com"]
    assert message.subject.startswith("[Roundtable alert] alice@example.com")
    assert "http://127.0.0.1:8000/sessions/detail/?id=s1" in message.body
    assert "Score: 90 (block band)" in message.body


def test_rule_without_recipients_sends_no_email(watched, clock):
    raise_block_alert(watched)

    assert mail.outbox == []


def test_email_subject_from_hostile_id_is_one_line(clock):
    hostile = WatchedUser.objects.create(user_id="x\r\nBcc: victim@example.com")
    AlertRule.objects.filter(kind=RuleKind.BLOCK_BAND).update(
        email_recipients=["soc@example.com"]
    )

    raise_block_alert(hostile, session_id="s\u202e\x07evil")

    [message] = mail.outbox
    assert "\r" not in message.subject
    assert "\n" not in message.subject
    assert "\u202e" not in message.subject
    assert "\x07" not in message.subject
    assert message.extra_headers == {}


def test_clean_subject_caps_length():
    subject = clean_subject("a" * 500)

    assert len(subject) == 150
    assert subject.endswith("…")

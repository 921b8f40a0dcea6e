"""Webhook payloads, their signature, and one delivery attempt.

The signature header is ``t=<unix seconds>,v1=<hex HMAC-SHA256>`` over the
bytes ``<t>.<body>`` with the endpoint's secret. Receivers recompute it,
compare in constant time and reject old timestamps to stop replays.
"""

import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

import certifi
import urllib3
from django.conf import settings

from alerts.links import absolute_url, alert_path
from alerts.urlcheck import UnsafeWebhookURL, validate_webhook_url

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Roundtable-Dashboard-Signature"
USER_AGENT = "roundtable-dashboard-webhooks/1"
# Attempts per alert and endpoint, the first included. Retries wait 1, 2, 4
# and 8 minutes, so the last attempt comes about 15 minutes after the first.
MAX_ATTEMPTS = 5
FIRST_RETRY_DELAY = timedelta(minutes=1)


def generate_secret():
    return secrets.token_hex(32)


def retry_delay(attempt):
    """Return the wait after failed attempt number ``attempt`` (1-based)."""
    return FIRST_RETRY_DELAY * 2 ** (attempt - 1)


def payload(alert):
    details = alert.details
    return {
        "id": alert.pk,
        "kind": alert.kind,
        "title": alert.title,
        "created_at": alert.created_at.isoformat(),
        "user_id": alert.user_id,
        "session_id": alert.session_id or None,
        "score": details.get("score"),
        "band": details.get("band"),
        "recommended_action": details.get("recommended_action"),
        "checks_detected": details.get("checks_detected", []),
        "details": details,
        "url": absolute_url(alert_path(alert)),
    }


def sign(secret, timestamp, body):
    message = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass
class AttemptResult:
    succeeded: bool
    status_code: int | None = None
    error: str = ""


def post_alert(endpoint, alert, now):
    """POST one alert to one endpoint; return the outcome, never raise for HTTP."""
    try:
        # Checked again at send time: the host's DNS records may have changed.
        target = validate_webhook_url(endpoint.url)
    except UnsafeWebhookURL as error:
        return AttemptResult(False, error=f"Rejected before sending: {error}")

    body = json.dumps(payload(alert), separators=(",", ":")).encode()
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign(endpoint.secret, int(now.timestamp()), body),
    }
    try:
        status, location = send(target, body, headers)
    except (urllib3.exceptions.HTTPError, OSError) as error:
        return AttemptResult(False, error=f"{type(error).__name__}: {error}")
    if 200 <= status < 300:
        return AttemptResult(True, status)
    if 300 <= status < 400 and location:
        return AttemptResult(False, status, "Redirects are not followed.")
    return AttemptResult(False, status, f"The endpoint returned HTTP {status}.")


def send(target, body, headers):
    """POST ``body`` to the target's checked addresses; return status and Location.

    Tries the addresses in the resolver's order and moves to the next one only
    when a connection fails, as socket.create_connection does, so the request
    is sent at most once. The response body is never read.
    """
    for address in target.addresses[:-1]:
        try:
            return _send_to(address, target, body, headers)
        except urllib3.exceptions.ConnectTimeoutError as error:
            # Covers NewConnectionError too: no byte of the request was sent.
            logger.info(
                "Webhook host %s: connecting to %s failed (%s); trying the next "
                "address",
                target.host,
                address,
                error,
            )
    return _send_to(target.addresses[-1], target, body, headers)


def _send_to(address, target, body, headers):
    pool = connection_pool(target, address)
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers=headers,
            redirect=False,
            retries=False,
            preload_content=False,
        )
        response.close()
    finally:
        pool.close()
    return response.status, response.headers.get("Location")


def connection_pool(target, address):
    """Return a pool that connects to ``address``, one the URL check accepted.

    Connecting to the checked address, not the host name, stops a DNS answer
    that changes after the check from sending the request elsewhere. urllib3
    pools read no proxy settings from the environment, so the request goes
    directly to that address.
    """
    timeout = urllib3.Timeout(
        connect=settings.WEBHOOK_CONNECT_TIMEOUT, read=settings.WEBHOOK_READ_TIMEOUT
    )
    if target.scheme == "https":
        # The certificate must be valid for the URL's host, not the address.
        return urllib3.HTTPSConnectionPool(
            address,
            target.port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
        )
    return urllib3.HTTPConnectionPool(
        address, target.port, timeout=timeout, retries=False, maxsize=1
    )

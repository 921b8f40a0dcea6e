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

import requests
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
        # NOTE: requests resolves the host once more when it connects, so a
        # DNS answer that changes within that moment is not caught.
        validate_webhook_url(endpoint.url)
    except UnsafeWebhookURL as error:
        return AttemptResult(False, error=f"Rejected before sending: {error}")

    body = json.dumps(payload(alert), separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign(endpoint.secret, int(now.timestamp()), body),
    }
    with requests.Session() as session:
        # No proxies or credentials from the environment: the URL check above
        # covers only direct connections.
        session.trust_env = False
        try:
            response = session.post(
                endpoint.url,
                data=body,
                headers=headers,
                timeout=(
                    settings.WEBHOOK_CONNECT_TIMEOUT,
                    settings.WEBHOOK_READ_TIMEOUT,
                ),
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException as error:
            return AttemptResult(False, error=f"{type(error).__name__}: {error}")
        response.close()
    status = response.status_code
    if 200 <= status < 300:
        return AttemptResult(True, status)
    if response.is_redirect:
        return AttemptResult(False, status, "Redirects are not followed.")
    return AttemptResult(False, status, f"The endpoint returned HTTP {status}.")

"""Alert e-mails: a sanitised subject and a plain-text body with a link back."""

import unicodedata

from django.conf import settings
from django.core.mail import send_mail

from alerts.links import absolute_url, alert_path

SUBJECT_PREFIX = "[Roundtable alert] "
MAX_SUBJECT_LENGTH = 150


def clean_subject(text, max_length=MAX_SUBJECT_LENGTH):
    """Return ``text`` on one line, without control characters, at most max_length.

    Subjects contain API text (user and session IDs), which could otherwise
    inject headers with CR/LF or hide text with bidirectional overrides.
    """
    printable = "".join(
        " " if unicodedata.category(ch).startswith("C") else ch for ch in text
    )
    line = " ".join(printable.split())
    if len(line) > max_length:
        line = line[: max_length - 1] + "…"
    return line


def alert_body(alert):
    details = alert.details
    lines = [alert.title, "", f"User: {alert.user_id}"]
    if alert.session_id:
        lines += [
            f"Session: {alert.session_id}",
            f"Score: {details.get('score')} ({details.get('band')} band)",
            f"Recommended action: {details.get('recommended_action')}",
            "Checks detected: " + (", ".join(details.get("checks_detected")) or "none"),
        ]
    lines += [
        f"Raised: {alert.created_at:%Y-%m-%d %H:%M:%S %Z}",
        "",
        f"Open in the dashboard: {absolute_url(alert_path(alert))}",
    ]
    return "\n".join(lines) + "\n"


def send_alert_email(alert, recipients):
    return send_mail(
        clean_subject(SUBJECT_PREFIX + alert.title),
        alert_body(alert),
        settings.DEFAULT_FROM_EMAIL,
        recipients,
    )

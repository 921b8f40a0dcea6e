"""Absolute links from alerts back to the dashboard, for e-mails and webhooks."""

from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse


def alert_path(alert):
    """Return the page an alert is about: its session, else its user, else the inbox."""
    if alert.session_id:
        return f"{reverse('session_detail')}?{urlencode({'id': alert.session_id})}"
    if alert.watched_user_id:
        return reverse("user_detail", args=[alert.watched_user_id])
    return reverse("alerts:inbox")


def absolute_url(path):
    return settings.DASHBOARD_BASE_URL + path

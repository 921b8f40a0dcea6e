"""Login throttling with django-axes, with two failure limits, the client
address and the lockout page.

Axes compares one failure count with one limit. Analysts often share an
office address, so the address gets its own, higher limit: one analyst's
typos lock that username only, and a guesser who rotates usernames is stopped
by the address limit.
"""

import ipaddress
import logging
import math
from datetime import timedelta

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Max, Sum
from django.shortcuts import render
from django.utils import timezone

logger = logging.getLogger(__name__)


class LoginThrottleHandler(AxesDatabaseHandler):
    """Axes' database handler with separate limits per username and per address.

    Axes locks when get_failures() reaches AXES_FAILURE_LIMIT, the username
    limit, so an address over LOGIN_IP_FAILURE_LIMIT reports that limit.
    """

    def get_failures(self, request, credentials=None):
        username_failures, address_failures = recent_failures(request, credentials)
        if address_failures >= settings.LOGIN_IP_FAILURE_LIMIT:
            return max(username_failures, settings.AXES_FAILURE_LIMIT)
        return username_failures


def _recent_attempts(request):
    return AccessAttempt.objects.filter(
        attempt_time__gte=get_cool_off_threshold(request)
    )


def recent_failures(request, credentials=None):
    """Return the failures within the cool-off for the username and the address."""
    username = get_client_username(request, credentials)
    attempts = _recent_attempts(request)
    by_username = attempts.filter(username=username)
    by_address = attempts.filter(ip_address=request.axes_ip_address)
    return (
        by_username.aggregate(total=Sum("failures_since_start"))["total"] or 0,
        by_address.aggregate(total=Sum("failures_since_start"))["total"] or 0,
    )


def lockout_end(request, credentials=None):
    """Return when every limit this login is over will have lifted.

    Attempts leave the count one cool-off after their latest failure, so the
    latest failure on each exceeded limit plus the cool-off bounds the wait.
    """
    username = get_client_username(request, credentials)
    username_failures, address_failures = recent_failures(request, credentials)
    attempts = _recent_attempts(request)
    exceeded = []
    if username_failures >= settings.AXES_FAILURE_LIMIT:
        exceeded.append(attempts.filter(username=username))
    if address_failures >= settings.LOGIN_IP_FAILURE_LIMIT:
        exceeded.append(attempts.filter(ip_address=request.axes_ip_address))
    times = [
        group.aggregate(latest=Max("attempt_time"))["latest"] for group in exceeded
    ]
    times = [time for time in times if time is not None]
    return max(times, default=timezone.now()) + get_cool_off(request)


def lockout_response(request, original_response, credentials=None):
    """Render the login page with when to try again (HTTP 429).

    Axes calls this for a login that is over a limit, in place of the login
    view's response, whether or not the password was right.
    """
    retry_at = lockout_end(request, credentials)
    wait = max(retry_at - timezone.now(), timedelta(0))
    minutes = max(1, math.ceil(wait.total_seconds() / 60))
    username = get_client_username(request, credentials) or ""
    context = {
        "form": AuthenticationForm(request, initial={"username": username}),
        "next": request.POST.get("next", ""),
        "lockout_until": retry_at,
        "lockout_minutes": minutes,
    }
    response = render(request, "registration/login.html", context, status=429)
    response["Retry-After"] = str(math.ceil(wait.total_seconds()))
    return response


def client_ip(request):
    """Return the client's IP address for throttling.

    With DJANGO_CLIENT_IP_HEADER set, the address is the last entry of that
    header: the one the nearest proxy added to X-Forwarded-For, or the only
    one in a header such as X-Real-IP. Entries before it come from the
    client and are ignored. A missing or invalid header falls back to the
    peer address, which is then the proxy's, so such logins share one count.

    NOTE: behind two proxies in a row, the last X-Forwarded-For entry is the
    outer proxy's address, so every client shares one count there.
    """
    peer = request.META.get("REMOTE_ADDR")
    meta_key = settings.LOGIN_CLIENT_IP_META_KEY
    if not meta_key:
        return peer
    value = request.META.get(meta_key, "")
    candidate = value.rsplit(",", 1)[-1].strip()
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        logger.warning(
            "Login request from %s has no valid client address in %s (%r); "
            "counting its failures against %s",
            peer,
            meta_key,
            value[:100],
            peer,
        )
        return peer

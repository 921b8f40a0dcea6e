"""Activate each analyst's time zone for the request, so pages show local times."""

import logging
import zoneinfo

from django.conf import settings
from django.utils import timezone

from dashboard.models import AnalystPreference, time_zone_names

logger = logging.getLogger(__name__)

# Session key of the signed-in analyst's chosen zone name ("" for the default).
# Kept in the session so that a page costs no extra query to find the zone.
# NOTE: a change made from another browser or the admin shows in this one
# only after the next login.
SESSION_KEY = "dashboard_time_zone"


class AnalystTimeZoneMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        timezone.activate(zoneinfo.ZoneInfo(analyst_time_zone_name(request)))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


def analyst_time_zone_name(request):
    """Return the zone name to show times in for this request's user."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return settings.DASHBOARD_TIME_ZONE

    chosen = request.session.get(SESSION_KEY)
    if chosen is None:
        chosen = (
            AnalystPreference.objects.filter(user=user)
            .values_list("time_zone", flat=True)
            .first()
        ) or ""
        remember_time_zone(request, chosen)
    if chosen and chosen not in time_zone_names():
        # A zone stored before a tz database update that dropped it.
        logger.warning(
            "Analyst %s has unknown time zone %r; showing %s",
            user.pk,
            chosen,
            settings.DASHBOARD_TIME_ZONE,
        )
        return settings.DASHBOARD_TIME_ZONE
    return chosen or settings.DASHBOARD_TIME_ZONE


def remember_time_zone(request, name):
    """Store the analyst's chosen zone name ("" for the default) in the session."""
    request.session[SESSION_KEY] = name

"""Activate each analyst's time zone for the request, so pages show local times."""

import logging
import zoneinfo

from django.conf import settings
from django.utils import timezone

from dashboard.models import AnalystPreference, time_zone_names

logger = logging.getLogger(__name__)


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
    """Return the zone name to show times in for this request's user.

    Reads the preference on every request (one indexed query), so a change
    made in another browser or in the admin applies at the next page.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return settings.DASHBOARD_TIME_ZONE

    chosen = (
        AnalystPreference.objects.filter(user=user)
        .values_list("time_zone", flat=True)
        .first()
    )
    if chosen and chosen not in time_zone_names():
        # A zone stored before a tz database update that dropped it, or one
        # that browsers reject, which the preferences form no longer offers.
        logger.warning(
            "Analyst %s has unsupported time zone %r; showing %s",
            user.pk,
            chosen,
            settings.DASHBOARD_TIME_ZONE,
        )
        return settings.DASHBOARD_TIME_ZONE
    return chosen or settings.DASHBOARD_TIME_ZONE

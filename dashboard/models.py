"""Per-analyst settings of the dashboard."""

import zoneinfo
from functools import cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


def is_offered_time_zone(name):
    """Return whether analysts may pick zone ``name``.

    Pages format times in the browser with the same name, and browsers'
    Intl.DateTimeFormat raises RangeError for tz database names such as
    "localtime" and "Factory". Names with a "/" (such as Europe/Paris or
    Etc/GMT+5) and "UTC" are accepted.
    """
    return "/" in name or name == "UTC"


@cache
def time_zone_names():
    """Return the sorted zone names of this machine's tz database on offer."""
    # available_timezones() walks the tz database on disk at every call.
    return sorted(filter(is_offered_time_zone, zoneinfo.available_timezones()))


def validate_time_zone(value):
    if value not in time_zone_names():
        raise ValidationError(
            "%(value)s is not a time zone name this dashboard offers: use UTC "
            "or an IANA Area/Location name such as Europe/Paris.",
            code="invalid_time_zone",
            params={"value": value},
        )


class AnalystPreference(models.Model):
    """Display choices of one analyst (a Django user)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="analyst_preference",
    )
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text="IANA zone name; empty means DASHBOARD_TIME_ZONE.",
    )

    def __str__(self):
        return f"Preferences of {self.user}"

"""Split an overview range into whole tallied hours and the sessions around them.

The overview counts sessions of a range from ``since`` (None for all time)
to ``now`` inclusive. Whole UTC hours inside the range are read from the
hourly tallies (roundtable_sync.tallies). The part of an hour at either end
is counted from the sessions themselves, which the session time index keeps
cheap. The two parts never overlap, so their counts add up.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Q

HOUR = timedelta(hours=1)


def _hour_floor(moment):
    # In UTC: a zone's hours can start at half past a UTC hour.
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _hour_ceiling(moment):
    floor = _hour_floor(moment)
    return floor if floor == moment else floor + HOUR


@dataclass(frozen=True)
class Coverage:
    since: datetime | None
    now: datetime
    # Tallied hours start at first_hour (None: the earliest) and end before
    # end_hour. No hour is tallied when first_hour >= end_hour.
    first_hour: datetime | None
    end_hour: datetime

    @classmethod
    def of(cls, since, now):
        # The hour holding ``now`` is not whole: its sessions after ``now``
        # are outside the range.
        end_hour = _hour_floor(now)
        first_hour = _hour_ceiling(since) if since is not None else None
        return cls(since, now, first_hour, end_hour)

    @property
    def has_tallied_hours(self):
        return self.first_hour is None or self.first_hour < self.end_hour

    def tally_q(self):
        """Filter the tally rows of the whole hours in range."""
        condition = Q(hour__lt=self.end_hour)
        if self.first_hour is not None:
            condition &= Q(hour__gte=self.first_hour)
        return condition

    def session_q(self, field="session_time"):
        """Filter the sessions of the range that no tallied hour counts."""
        if not self.has_tallied_hours:
            condition = Q(**{f"{field}__lte": self.now})
            if self.since is not None:
                condition &= Q(**{f"{field}__gte": self.since})
            return condition
        condition = Q(**{f"{field}__gte": self.end_hour, f"{field}__lte": self.now})
        if self.since is not None and self.since < self.first_hour:
            condition |= Q(
                **{f"{field}__gte": self.since, f"{field}__lt": self.first_hour}
            )
        return condition


def counter(aggregate, field):
    """Return a function making ``aggregate(field)`` for a condition (None: all).

    The sessions are counted with Count("pk") and the tallies with
    Sum("sessions"), so the figures build each filtered count through this.
    """
    return lambda condition=None: aggregate(field, filter=condition)

"""Split an overview range into whole summed units and the sessions around them.

The overview counts sessions of a range from ``since`` (None for all time)
to ``now`` inclusive. With hours as the unit, whole UTC days inside the
range are read from the day tallies and the other whole UTC hours from the
hourly tallies (roundtable_sync.tallies). The part of an hour at either end
is read from the sessions themselves, which the session time index keeps
cheap. With days as the unit (the per-user summaries of roundtable_sync.user_risk),
whole days come from the summaries and the rest from the sessions. The
parts never overlap, so their counts add up.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Q

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def _floor(moment, unit):
    # In UTC: a zone's hours can start at half past a UTC hour.
    moment = moment.astimezone(UTC)
    if unit == DAY:
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def _ceiling(moment, unit):
    floor = _floor(moment, unit)
    return floor if floor == moment else floor + unit


@dataclass(frozen=True)
class Coverage:
    since: datetime | None
    now: datetime
    # Summed units (hours or days) start at ``first`` (None: the earliest)
    # and end before ``end``. No unit is summed when first >= end.
    first: datetime | None
    end: datetime
    unit: timedelta = HOUR

    @classmethod
    def of(cls, since, now, unit=HOUR):
        # The unit holding ``now`` is not whole: its sessions after ``now``
        # are outside the range.
        end = _floor(now, unit)
        first = _ceiling(since, unit) if since is not None else None
        return cls(since, now, first, end, unit)

    @property
    def has_whole_units(self):
        return self.first is None or self.first < self.end

    def tally_q(self, field="hour"):
        """Filter the summary rows of the whole units in range, keyed by ``field``."""
        condition = Q(**{f"{field}__lt": self.end})
        if self.first is not None:
            condition &= Q(**{f"{field}__gte": self.first})
        return condition

    @property
    def first_day(self):
        """The first whole UTC day inside the whole hours (None: the earliest)."""
        return None if self.first is None else _ceiling(self.first, DAY)

    @property
    def end_day(self):
        return _floor(self.end, DAY)

    @property
    def has_whole_days(self):
        return self.first_day is None or self.first_day < self.end_day

    def day_q(self):
        """Filter the day tally rows of the whole days in range."""
        condition = Q(day__lt=self.end_day)
        if self.first_day is not None:
            condition &= Q(day__gte=self.first_day)
        return condition

    def hour_q(self):
        """Filter the hourly tally rows in range that no day row counts.

        Those are the rows of the whole hours outside the whole days, and
        the rows of the whole days that compact() has not folded yet. Each
        is a range of the hour, so the database reads it from an index.
        """
        if not self.has_whole_days:
            return self.tally_q()
        after_days = Q(hour__gte=self.end_day, hour__lt=self.end)
        unfolded = Q(compacted=False, hour__lt=self.end_day)
        if self.first_day is None:
            return after_days | unfolded
        before_days = Q(hour__gte=self.first, hour__lt=self.first_day)
        unfolded &= Q(hour__gte=self.first_day)
        return before_days | after_days | unfolded

    def session_q(self, field="session_time"):
        """Filter the sessions of the range outside its whole units."""
        if not self.has_whole_units:
            condition = Q(**{f"{field}__lte": self.now})
            if self.since is not None:
                condition &= Q(**{f"{field}__gte": self.since})
            return condition
        condition = Q(**{f"{field}__gte": self.end, f"{field}__lte": self.now})
        if self.since is not None and self.since < self.first:
            condition |= Q(**{f"{field}__gte": self.since, f"{field}__lt": self.first})
        return condition


def counter(aggregate, field):
    """Return a function making ``aggregate(field)`` for a condition (None: all).

    The sessions are counted with Count("pk") and the tallies with
    Sum("sessions"), so the figures build each filtered count through this.
    """
    return lambda condition=None: aggregate(field, filter=condition)

"""Session aggregates per calendar day in a time zone, for the daily series.

Whole UTC hours of the range come from the hourly tallies and are added to
the local day they fall in. An hour that straddles two local days (in a zone
whose offset is not a whole number of hours, such as India's +05:30) is
counted again from its sessions, row by row. The rest of the range, less
than an hour at either end, is counted from the sessions themselves.

PostgreSQL groups by ``session_time AT TIME ZONE`` natively. SQLite has no
time zone database, and Django's TruncDate with a zone calls a Python function
once per row, which takes seconds over a million sessions. On SQLite the
sessions are therefore grouped by UTC quarter-hour in SQL, and each
quarter-hour is added to its local day in Python. The UTC offsets in today's
IANA time zone database are whole quarter-hours, so a quarter-hour lies within
one local day. One whose first and last instants fall on different local days
(an older offset such as Amsterdam's +00:19:32 of 1930) is regrouped row by row
with TruncDate, in one more query, so the result stays exact.
"""

from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import CharField, Count, F, Func, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from dashboard.coverage import counter
from roundtable_sync.models import Session, SessionTally

HOUR = timedelta(hours=1)
QUARTER_HOUR = timedelta(minutes=15)
# SQLite raises an error for an expression more than 1,000 levels deep, and
# each time window ORed into a query adds a level.
WINDOWS_PER_QUERY = 200
ONE_MICROSECOND = timedelta(microseconds=1)


class UTCQuarterHour(Func):
    """The UTC quarter-hour of a datetime stored by Django on SQLite.

    Django stores an aware datetime on SQLite as UTC text,
    "YYYY-MM-DD HH:MM:SS[.ffffff]", so string slices give the hour and the
    minute. The value is "YYYY-MM-DD HH:N" with N from 0 to 3.
    """

    output_field = CharField()

    def as_sql(self, compiler, connection, **extra_context):
        raise NotImplementedError("UTCQuarterHour is for SQLite only.")

    def as_sqlite(self, compiler, connection, **extra_context):
        column, params = compiler.compile(self.source_expressions[0])
        sql = (
            f"(substr({column}, 1, 13) || ':' || "
            f"(CAST(substr({column}, 15, 2) AS INTEGER) / 15))"
        )
        return sql, params


def daily_totals(coverage, high_risk_q, days_shown):
    """Return {local date: row} for the sessions of ``coverage``.

    Days are calendar days in the current time zone. Each row has
    ``sessions``, ``scored`` (sessions with a score), ``average`` (their mean
    score, None without any) and ``high_risk`` (sessions matching
    ``high_risk_q``). Days without sessions are left out. Only the last
    ``days_shown`` days are exact: an earlier hour that straddles two of them
    counts on the first, so that the straddling hours counted again, about one
    a day, stay few however long the range.
    """
    zone = timezone.get_current_timezone()
    by_day = {}
    sessions = Session.objects.filter(coverage.session_q())
    for day, row in _session_days(sessions, zone, high_risk_q).items():
        _add(by_day, day, row)
    if coverage.has_whole_units:
        _add_tallied_hours(by_day, coverage, zone, high_risk_q, days_shown)
    for day in [day for day, total in by_day.items() if not total["sessions"]]:
        del by_day[day]
    for total in by_day.values():
        # An integer sum over a count, as SQLite's AVG divides.
        scored = total["scored"]
        total["average"] = total.pop("score_sum") / scored if scored else None
    return by_day


def _aggregates(high_risk_q, count):
    return {
        "sessions": count(),
        "scored": count(Q(risk_score__isnull=False)),
        "high_risk": count(high_risk_q),
    }


def _add_tallied_hours(by_day, coverage, zone, high_risk_q, days_shown):
    aggregates = {
        **_aggregates(high_risk_q, counter(Sum, "sessions")),
        "score_sum": Sum(F("risk_score") * F("sessions")),
    }
    # Annotations may not reuse the name of the tally's own "sessions" field.
    rows = (
        SessionTally.objects.filter(coverage.tally_q())
        .values_list("hour")
        .annotate(**{f"total_{name}": value for name, value in aggregates.items()})
        .order_by()
    )
    straddling = {}
    for start, *values in rows:
        row = dict(zip(aggregates, values, strict=True))
        # Rows not yet folded can add up to no session at all.
        if not row["sessions"]:
            continue
        day = timezone.localdate(start, zone)
        end_day = timezone.localdate(start + HOUR - ONE_MICROSECOND, zone)
        if end_day != day:
            straddling[start] = (end_day, row)
            continue
        _add(by_day, day, row)
    if not straddling:
        return
    last_day = max([*by_day, *(end_day for end_day, _ in straddling.values())])
    first_shown = last_day - timedelta(days=days_shown - 1)
    exact = []
    for start, (end_day, row) in straddling.items():
        if end_day < first_shown:
            _add(by_day, timezone.localdate(start, zone), row)
        else:
            exact.append(start)
    for batch_start in range(0, len(exact), WINDOWS_PER_QUERY):
        batch = exact[batch_start : batch_start + WINDOWS_PER_QUERY]
        counted = _grouped_by_day(
            Session.objects.filter(_windows(batch, HOUR)),
            zone,
            _session_aggregates(high_risk_q),
        )
        for day, row in counted.items():
            _add(by_day, day, row)


def _session_aggregates(high_risk_q):
    return {
        **_aggregates(high_risk_q, counter(Count, "pk")),
        "score_sum": Sum("risk_score"),
    }


def _windows(starts, length):
    windows = Q()
    for start in starts:
        windows |= Q(session_time__gte=start, session_time__lt=start + length)
    return windows


def _session_days(sessions, zone, high_risk_q):
    """Return {local date: row with score_sum} for ``sessions``."""
    aggregates = _session_aggregates(high_risk_q)
    if connection.vendor != "sqlite":
        return _grouped_by_day(sessions, zone, aggregates)

    rows = (
        sessions.annotate(quarter=UTCQuarterHour("session_time"))
        .values("quarter")
        .annotate(**aggregates)
        .order_by()
    )
    by_day = {}
    straddling = []
    for row in rows:
        start = _quarter_start(row.pop("quarter"))
        day = timezone.localdate(start, zone)
        if timezone.localdate(start + QUARTER_HOUR - ONE_MICROSECOND, zone) != day:
            straddling.append(start)
            continue
        _add(by_day, day, row)
    if straddling:
        exact = _grouped_by_day(
            sessions.filter(_windows(straddling, QUARTER_HOUR)), zone, aggregates
        )
        for day, row in exact.items():
            _add(by_day, day, row)
    return by_day


def _grouped_by_day(sessions, zone, aggregates):
    rows = (
        sessions.annotate(day=TruncDate("session_time", tzinfo=zone))
        .values("day")
        .annotate(**aggregates)
        .order_by()
    )
    return {row.pop("day"): row for row in rows}


def _quarter_start(quarter):
    hour, _, index = quarter.rpartition(":")
    start = datetime.strptime(hour, "%Y-%m-%d %H").replace(tzinfo=UTC)
    return start + int(index) * QUARTER_HOUR


def _add(by_day, day, row):
    total = by_day.setdefault(
        day, {"sessions": 0, "scored": 0, "score_sum": 0, "high_risk": 0}
    )
    for key in total:
        total[key] += row[key] or 0

"""Session aggregates per calendar day in a time zone, for the daily series.

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
from django.db.models import Avg, CharField, Count, Func, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

QUARTER_HOUR = timedelta(minutes=15)
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


def daily_totals(sessions, high_risk_q):
    """Return {local date: row} for ``sessions`` in the current time zone.

    Each row has ``sessions``, ``scored`` (sessions with a score),
    ``average`` (their mean score, None without any) and ``high_risk``
    (sessions matching ``high_risk_q``).
    """
    aggregates = {
        "sessions": Count("pk"),
        "scored": Count("risk_score"),
        "high_risk": Count("pk", filter=high_risk_q),
    }
    zone = timezone.get_current_timezone()
    if connection.vendor != "sqlite":
        # AVG of a smallint is an exact decimal here, kept as it is so the
        # rounding for display does not change.
        return _grouped_by_day(
            sessions, zone, {**aggregates, "average": Avg("risk_score")}
        )

    aggregates["score_sum"] = Sum("risk_score")

    rows = (
        sessions.annotate(quarter=UTCQuarterHour("session_time"))
        .values("quarter")
        .annotate(**aggregates)
        .order_by()
    )
    by_day = {}
    straddling = []
    for row in rows:
        start = _quarter_start(row["quarter"])
        day = timezone.localdate(start, zone)
        if timezone.localdate(start + QUARTER_HOUR - ONE_MICROSECOND, zone) != day:
            straddling.append(start)
            continue
        _add(by_day, day, row)
    if straddling:
        windows = Q()
        for start in straddling:
            windows |= Q(session_time__gte=start, session_time__lt=start + QUARTER_HOUR)
        exact = _grouped_by_day(sessions.filter(windows), zone, aggregates)
        for day, row in exact.items():
            _add(by_day, day, row)
    for total in by_day.values():
        # The same division as SQLite's AVG: an integer sum over a count.
        scored = total["scored"]
        total["average"] = total.pop("score_sum") / scored if scored else None
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

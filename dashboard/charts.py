"""Aggregate queries behind the overview's figures, one function per figure.

Each function runs at most a fixed number of queries, grouped and counted
in the database. The selected range covers ``Session.session_time`` from ``since``
(None for all time) to ``now`` inclusive, so a session dated in the future
counts in none. Counts by score, action and check come from the day
tallies for the whole days of the range, the hourly tallies for its other
whole hours and the sessions for the rest (dashboard.coverage), so they
cost about the same whatever the number of stored sessions.
"""

from contextlib import contextmanager
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Case, CharField, Count, F, Q, Sum, Value, When
from django.db.models.functions import Greatest, Least
from django.utils import timezone

from dashboard.coverage import Coverage, counter
from dashboard.daily import daily_totals
from dashboard.filters import DOCUMENTED_ACTIONS
from roundtable_sync.bands import Band
from roundtable_sync.checks import DOCUMENTED_CHECKS, ordered_check_keys
from roundtable_sync.models import (
    CheckDayTally,
    CheckTally,
    Session,
    SessionCheck,
    SessionDayTally,
    SessionTally,
    WatchedUser,
)
from roundtable_sync.scoring_changes import scoring_changes_between

MISSING_ACTION_LABEL = "Missing (no recommended action)"

# The check statuses the API documents.
DETECTED = "Detected"
NOT_DETECTED = "Not detected"
UNKNOWN = "Unknown"

HISTOGRAM_BUCKETS = 10
NEWEST_FLAGGED = 10
# Recommended actions are free text from the API, so a hostile or buggy feed
# could send thousands of distinct values. Only this many bars are drawn.
MAX_ACTIONS = 20
# A session dated decades back would stretch the daily series over thousands
# of empty days, so the series keeps at most this many days up to its last.
MAX_SERIES_DAYS = 3 * 365

# The counts of each check row, in the order check_rates queries them.
CHECK_COUNTS = ["detected", "not_detected", "unknown", "reports"]

NEWEST_FLAGGED_FIELDS = [
    "session_id",
    "user_id",
    "session_time",
    "session_time_source",
    "risk_score",
    "recommended_action",
]


@contextmanager
def one_snapshot():
    """Read the figures inside from one snapshot of the database, if it can.

    A figure adds tallied hours to sessions counted in another query. A
    session that moves between hours in the meantime (the events fetch dates
    sessions again) would count twice or not at all.
    """
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        # NOTE: on SQLite every transaction here takes the write lock
        # (transaction_mode IMMEDIATE), which would hold up the worker while
        # a page renders, so SQLite reads each query on its own. Inside an
        # outer transaction (tests) the isolation level is already fixed.
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield


def _range_q(since, now, field="session_time"):
    condition = Q(**{f"{field}__lte": now})
    if since is not None:
        condition &= Q(**{f"{field}__gte": since})
    return condition


def _count(condition=None):
    """Count the rows matching ``condition``, or all rows when it is empty."""
    return Count("pk", filter=condition) if condition else Count("pk")


def sessions_in_range(since, now):
    return Session.objects.filter(_range_q(since, now))


def watched_user_counts():
    """Return the number of active and paused watched users, in one query."""
    return WatchedUser.objects.aggregate(
        active=_count(Q(is_active=True)),
        paused=_count(Q(is_active=False)),
    )


def _session_parts(coverage):
    """Return (queryset, count) for the sessions and the tallies of a range.

    The tallies share the session fields that the figures filter and group
    on (risk_score, recommended_action), so one expression serves both.
    """
    parts = [(Session.objects.filter(coverage.session_q()), counter(Count, "pk"))]
    if coverage.has_whole_units:
        parts.append(
            (
                SessionTally.objects.filter(coverage.hour_q()),
                counter(Sum, "sessions"),
            )
        )
    if coverage.has_whole_units and coverage.has_whole_days:
        parts.append(
            (
                SessionDayTally.objects.filter(coverage.day_q()),
                counter(Sum, "sessions"),
            )
        )
    return parts


def _union(querysets):
    """Combine the rows of ``querysets`` into one statement.

    One statement reads one snapshot, also on SQLite, so a fold of the
    tallies that runs meanwhile cannot count a session twice or not at all.
    """
    first, *rest = querysets
    return first.union(*rest, all=True) if rest else first


def _one_row(queryset, **aggregates):
    """Aggregate ``queryset`` into one row that a union can combine.

    The row starts with a constant column, so there is no GROUP BY.
    """
    return (
        queryset.annotate(part=Value(0))
        .values_list("part")
        .annotate(**aggregates)
        .order_by()
    )


def _session_totals(coverage, conditions):
    """Count the sessions in range matching each condition (None: all)."""
    totals = dict.fromkeys(conditions, 0)
    rows = _union(
        [
            _one_row(
                queryset,
                **{name: count(condition) for name, condition in conditions.items()},
            )
            for queryset, count in _session_parts(coverage)
        ]
    )
    for _, *values in rows:
        for name, value in zip(conditions, values, strict=True):
            totals[name] += value or 0
    return totals


def _session_groups(coverage, *fields, condition=None, **expressions):
    """Count the sessions in range matching ``condition`` per value of ``fields``.

    ``expressions`` are annotations that ``fields`` may name. Returns a dict
    from the tuple of values to the count, without zero counts.
    """
    rows = _union(
        [
            queryset.filter(condition or Q())
            .annotate(**expressions)
            .values_list(*fields)
            .annotate(count=count())
            .order_by()
            for queryset, count in _session_parts(coverage)
        ]
    )
    counts = {}
    for *key, value in rows:
        counts[tuple(key)] = counts.get(tuple(key), 0) + value
    return {key: value for key, value in counts.items() if value}


def session_counts(since, now, thresholds):
    """Return the headline session counts.

    ``total`` counts every stored session. ``last_24h`` and ``last_7d`` ignore
    the selected range. The others follow it.
    """
    last_24h = _session_totals(Coverage.of(now - timedelta(hours=24), now), {"n": None})
    last_7d = _session_totals(Coverage.of(now - timedelta(days=7), now), {"n": None})
    in_range = _session_totals(
        Coverage.of(since, now),
        {
            "in_range": None,
            "flagged": thresholds.flagged_q(),
            "high_risk": thresholds.high_risk_q(),
            "unscored": Q(risk_score__isnull=True),
        },
    )
    return {
        "total": _stored_sessions(),
        "last_24h": last_24h["n"],
        "last_7d": last_7d["n"],
        **in_range,
    }


def _stored_sessions():
    """Count every stored session, future ones too, from the tallies.

    The tallies have far fewer rows than the session table, which
    PostgreSQL's COUNT(*) reads in full.
    """
    unfolded = _one_row(
        SessionTally.objects.filter(compacted=False), total=Sum("sessions")
    )
    days = _one_row(SessionDayTally.objects.all(), total=Sum("sessions"))
    return sum(total or 0 for _, total in _union([unfolded, days]))


def band_labels(thresholds):
    """Name each band with the scores it covers, e.g. "Review (50–69)"."""
    return {
        Band.ALLOW: f"Allow (below {thresholds.review})",
        Band.REVIEW: f"Review ({thresholds.review}–{thresholds.block - 1})",
        Band.BLOCK: f"Block ({thresholds.block} and above)",
    }


def _band_expression(thresholds):
    return Case(
        When(thresholds.band_q(Band.BLOCK), then=Value(Band.BLOCK.value)),
        When(thresholds.band_q(Band.REVIEW), then=Value(Band.REVIEW.value)),
        default=Value(Band.ALLOW.value),
        output_field=CharField(),
    )


def score_histogram(since, now, thresholds):
    """Count scored sessions per 10-point bucket, split by band.

    Each bucket is split by band, so thresholds that are not multiples of 10
    still colour every session by its own band. Scores of 100 fall in the last
    bucket (90–100).
    """
    bucket = Greatest(Least(F("risk_score") / 10, Value(HISTOGRAM_BUCKETS - 1)), 0)
    groups = _session_groups(
        Coverage.of(since, now),
        "bucket",
        "band",
        condition=Q(risk_score__isnull=False),
        bucket=bucket,
        band=_band_expression(thresholds),
    )
    counts = {band: [0] * HISTOGRAM_BUCKETS for band in Band}
    for (bucket_index, band), count in groups.items():
        counts[Band(band)][bucket_index] += count

    labels = [f"{10 * i}–{10 * i + 9}" for i in range(HISTOGRAM_BUCKETS - 1)]
    labels.append(f"{10 * (HISTOGRAM_BUCKETS - 1)}–100")
    names = band_labels(thresholds)
    return {
        "labels": labels,
        "bands": [
            {"band": band.value, "label": names[band], "counts": counts[band]}
            for band in Band
        ],
        # The same counts by bucket, for the table beside the chart.
        "rows": [
            {"label": label, "counts": [counts[band][i] for band in Band]}
            for i, label in enumerate(labels)
        ],
        "total": sum(sum(band_counts) for band_counts in counts.values()),
    }


def risk_over_time(since, now, thresholds):
    """Return the daily average score and share of high-risk sessions.

    Days are calendar days in the current time zone. Days without sessions
    are kept as None, so the chart shows a gap instead of joining distant
    points. Known scoring changes inside the plotted days come along. At most
    MAX_SERIES_DAYS days are kept, the latest ones. ``left_out_sessions``
    counts the sessions on the earlier days.
    """
    tz = timezone.get_current_timezone()
    by_day = daily_totals(
        Coverage.of(since, now), thresholds.high_risk_q(), MAX_SERIES_DAYS
    )
    if not by_day:
        return {"days": [], "scoring_changes": [], "left_out_sessions": 0}

    first = min(by_day)
    last = max(by_day)
    if since is not None:
        first = min(first, timezone.localdate(since, tz))
        last = max(last, timezone.localdate(now, tz))
    first = max(first, last - timedelta(days=MAX_SERIES_DAYS - 1))
    left_out = sum(row["sessions"] for day, row in by_day.items() if day < first)

    days = []
    day = first
    while day <= last:
        days.append(_day_point(day, by_day.get(day)))
        day += timedelta(days=1)
    changes = scoring_changes_between(first, last)
    return {
        "days": days,
        "scoring_changes": [
            {"date": change.date.isoformat(), "description": change.description}
            for change in changes
        ],
        "left_out_sessions": left_out,
    }


def _day_point(day, row):
    point = {
        "date": day.isoformat(),
        "sessions": 0,
        "average": None,
        "high_risk_percent": None,
    }
    if row is None:
        return point
    point["sessions"] = row["sessions"]
    if row["scored"]:
        point["average"] = round(row["average"], 1)
        point["high_risk_percent"] = round(100 * row["high_risk"] / row["scored"], 1)
    return point


def sessions_by_action(since, now):
    """Count sessions per recommended action, documented actions first.

    Actions the API does not document are labelled as such, and sessions
    without an action get their own "missing" row. Documented actions and the
    missing row are always kept, and the most frequent undocumented actions
    fill the remaining bars up to MAX_ACTIONS.
    """
    groups = _session_groups(Coverage.of(since, now), "recommended_action")

    def order(item):
        (action,), count = item
        known = action is None or action in DOCUMENTED_ACTIONS
        return (not known, -count, action or "")

    rows = sorted(groups.items(), key=order)
    truncated = len(rows) > MAX_ACTIONS
    counts = {action: count for (action,), count in rows[:MAX_ACTIONS]}

    bars = [
        {"label": action, "count": counts.pop(action), "kind": "documented"}
        for action in DOCUMENTED_ACTIONS
        if action in counts
    ]
    missing = counts.pop(None, None)
    bars.extend(
        {"label": f"{action} (undocumented)", "count": count, "kind": "undocumented"}
        for action, count in counts.items()
    )
    if missing is not None:
        bars.append(
            {"label": MISSING_ACTION_LABEL, "count": missing, "kind": "missing"}
        )
    return {"bars": bars, "truncated": truncated}


def check_rates(since, now):
    """Return per-check status counts, detection rate and share of Unknown.

    The detection rate is Detected ÷ (Detected + Not detected), so Unknown
    reports do not dilute it. Its share is reported beside it instead.
    """
    coverage = Coverage.of(since, now)
    parts = [
        (
            SessionCheck.objects.filter(coverage.session_q("session__session_time")),
            counter(Count, "pk"),
        )
    ]
    if coverage.has_whole_units:
        parts.append(
            (CheckTally.objects.filter(coverage.hour_q()), counter(Sum, "reports"))
        )
    if coverage.has_whole_units and coverage.has_whole_days:
        parts.append(
            (CheckDayTally.objects.filter(coverage.day_q()), counter(Sum, "reports"))
        )
    rows = _union(
        [
            queryset.values_list("group", "name")
            .annotate(
                detected=count(Q(status=DETECTED)),
                not_detected=count(Q(status=NOT_DETECTED)),
                unknown=count(Q(status=UNKNOWN)),
                reports=count(),
            )
            .order_by()
            for queryset, count in parts
        ]
    )
    by_key = {}
    for group, name, *numbers in rows:
        total = by_key.setdefault(
            (group, name),
            {"group": group, "name": name, **dict.fromkeys(CHECK_COUNTS, 0)},
        )
        for field, number in zip(CHECK_COUNTS, numbers, strict=True):
            total[field] += number or 0
    by_key = {key: row for key, row in by_key.items() if row["reports"]}
    return [_check_row(by_key[key]) for key in ordered_check_keys(set(by_key))]


def _check_row(row):
    decided = row["detected"] + row["not_detected"]
    documented = DOCUMENTED_CHECKS.get(row["group"], {})
    return {
        **row,
        "other": row["reports"] - decided - row["unknown"],
        "documented": row["name"] in documented,
        "detection_percent": _percent(row["detected"], decided),
        "unknown_percent": _percent(row["unknown"], row["reports"]),
    }


def _percent(part, whole):
    return round(100 * part / whole, 1) if whole else None


def newest_flagged_sessions(since, now, thresholds):
    return list(
        sessions_in_range(since, now)
        .filter(thresholds.flagged_q())
        .only(*NEWEST_FLAGGED_FIELDS)
        .order_by("-session_time", "session_id")[:NEWEST_FLAGGED]
    )


def watched_user_pks(user_ids):
    """Map each watched user ID among ``user_ids`` to its WatchedUser pk."""
    return dict(
        WatchedUser.objects.filter(user_id__in=set(user_ids)).values_list(
            "user_id", "pk"
        )
    )

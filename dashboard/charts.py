"""Aggregate queries behind the overview's figures, one function per figure.

Each function runs a fixed number of queries, grouped and counted in the
database, so a figure costs the same whatever the number of stored sessions.
The selected range covers ``Session.session_time`` from ``since`` (None for all
time) to ``now`` inclusive, so a session dated in the future counts in none.
"""

from datetime import timedelta

from django.db.models import Case, CharField, Count, F, Max, Q, Value, When
from django.db.models.functions import Greatest, Least
from django.utils import timezone

from dashboard.daily import daily_totals
from dashboard.filters import DOCUMENTED_ACTIONS
from roundtable_sync.bands import Band
from roundtable_sync.checks import DOCUMENTED_CHECKS, ordered_check_keys
from roundtable_sync.models import Session, SessionCheck, WatchedUser
from roundtable_sync.scoring_changes import scoring_changes_between

MISSING_ACTION_LABEL = "Missing (no recommended action)"

# The check statuses the API documents.
DETECTED = "Detected"
NOT_DETECTED = "Not detected"
UNKNOWN = "Unknown"

HISTOGRAM_BUCKETS = 10
TOP_USERS = 10
NEWEST_FLAGGED = 10
# Recommended actions are free text from the API, so a hostile or buggy feed
# could send thousands of distinct values. Only this many bars are drawn.
MAX_ACTIONS = 20
# A session dated decades back would stretch the daily series over thousands
# of empty days, so the series keeps at most this many days up to its last.
MAX_SERIES_DAYS = 3 * 365

NEWEST_FLAGGED_FIELDS = [
    "session_id",
    "user_id",
    "session_time",
    "session_time_source",
    "risk_score",
    "recommended_action",
]


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


def session_counts(since, now, thresholds):
    """Return the headline session counts, in three queries.

    ``total`` counts every stored session. ``last_24h`` and ``last_7d`` ignore
    the selected range. The others follow it. Each query filters on its own
    time range, so the session time index limits the rows it reads, and a
    plain COUNT(*) of every row reads only the smallest index.
    """
    week_ago = now - timedelta(days=7)
    recent = Session.objects.filter(_range_q(week_ago, now)).aggregate(
        last_24h=_count(_range_q(now - timedelta(hours=24), now)),
        last_7d=_count(),
    )
    in_range = Session.objects.filter(_range_q(since, now)).aggregate(
        in_range=_count(),
        flagged=_count(thresholds.flagged_q()),
        high_risk=_count(thresholds.high_risk_q()),
        unscored=_count(Q(risk_score__isnull=True)),
    )
    return {"total": Session.objects.count(), **recent, **in_range}


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
    rows = (
        sessions_in_range(since, now)
        .filter(risk_score__isnull=False)
        .annotate(bucket=bucket, band=_band_expression(thresholds))
        .values("bucket", "band")
        .annotate(count=Count("pk"))
        .order_by()
    )
    counts = {band: [0] * HISTOGRAM_BUCKETS for band in Band}
    for row in rows:
        counts[Band(row["band"])][row["bucket"]] += row["count"]

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
    by_day = daily_totals(sessions_in_range(since, now), thresholds.high_risk_q())
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
    known = Q(recommended_action__in=DOCUMENTED_ACTIONS) | Q(
        recommended_action__isnull=True
    )
    rows = list(
        sessions_in_range(since, now)
        .values("recommended_action")
        .annotate(count=Count("pk"))
        .order_by(
            Case(When(known, then=Value(0)), default=Value(1)),
            "-count",
            "recommended_action",
        )[: MAX_ACTIONS + 1]
    )
    truncated = len(rows) > MAX_ACTIONS
    counts = {row["recommended_action"]: row["count"] for row in rows[:MAX_ACTIONS]}

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
    rows = (
        SessionCheck.objects.filter(_range_q(since, now, "session__session_time"))
        .values("group", "name")
        .annotate(
            detected=_count(Q(status=DETECTED)),
            not_detected=_count(Q(status=NOT_DETECTED)),
            unknown=_count(Q(status=UNKNOWN)),
            reports=Count("pk"),
        )
        .order_by()
    )
    by_key = {(row["group"], row["name"]): row for row in rows}
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


def riskiest_users(since, now, thresholds):
    """Return the users with the highest score in range, then most flagged.

    Rows carry ``user_id``, ``max_score``, ``flagged``, ``sessions`` and
    ``latest`` (newest session time).
    """
    return list(
        sessions_in_range(since, now)
        .values("user_id")
        .annotate(
            max_score=Max("risk_score"),
            flagged=_count(thresholds.flagged_q()),
            sessions=Count("pk"),
            latest=Max("session_time"),
        )
        .order_by(F("max_score").desc(nulls_last=True), "-flagged", "user_id")[
            :TOP_USERS
        ]
    )


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

"""The overview's riskiest users: highest score in range first, then most flagged.

Users whose summaries are current (roundtable_sync.user_risk) are read from
them: over all time from ``UserRisk``, over a range from ``UserRiskDay`` for
its whole UTC days plus their sessions in the partial days at either end.
Users with a pending change, and every user while the summaries were counted
at another review threshold, are read from their sessions. Both parts are
exact, so the figure equals grouping every session of the range by user.
"""

from django.db.models import Count, F, Max, Q, Sum

from dashboard.coverage import DAY, Coverage
from roundtable_sync.models import (
    Session,
    UserRisk,
    UserRiskChange,
    UserRiskDay,
    UserRiskState,
)

TOP_USERS = 10
ROW_FIELDS = ["user_id", "max_score", "flagged", "sessions", "latest"]


def riskiest_users(since, now, thresholds):
    """Return the TOP_USERS users of the range from ``since`` (None: all) to ``now``.

    Rows carry ``user_id``, ``max_score``, ``flagged``, ``sessions`` and
    ``latest`` (newest session time).
    """
    in_range = Q(session_time__lte=now)
    if since is not None:
        in_range &= Q(session_time__gte=since)
    state = UserRiskState.objects.first()
    if state is None or state.review != thresholds.review:
        return _top(_from_sessions(Session.objects.filter(in_range), thresholds))
    changed = UserRiskChange.objects.values("user_id")
    if since is None:
        return _all_time(now, changed, thresholds)
    coverage = Coverage.of(since, now, unit=DAY)
    whole_days = UserRiskDay.objects.filter(coverage.tally_q("day")).exclude(
        user_id__in=changed
    )
    partial_days = Session.objects.filter(coverage.session_q()).exclude(
        user_id__in=changed
    )
    changed_users = Session.objects.filter(in_range, user_id__in=changed)
    # One statement, so a refresh that runs meanwhile cannot count a user
    # twice or not at all, also on SQLite. Each part uses its own index.
    rows = _from_summaries(whole_days).union(
        _from_sessions(partial_days, thresholds),
        _from_sessions(changed_users, thresholds),
        all=True,
    )
    return _ranked(_merged(rows))


def _all_time(now, changed, thresholds):
    # A summary counts sessions dated after ``now`` too, so the users with
    # such a session are read from their sessions, like the changed ones.
    later = UserRisk.objects.filter(latest_session_time__gt=now).values("user_id")
    summarized = (
        UserRisk.objects.exclude(user_id__in=changed)
        .filter(latest_session_time__lte=now)
        .annotate(
            max_score=F("max_risk_score"),
            latest=F("latest_session_time"),
        )
        .values(*ROW_FIELDS)
    )
    unsummarized = Session.objects.filter(session_time__lte=now).filter(
        Q(user_id__in=changed) | Q(user_id__in=later)
    )
    # The two parts list different users, so the database can rank them.
    return _top(summarized.union(_from_sessions(unsummarized, thresholds), all=True))


def _from_sessions(sessions, thresholds):
    return sessions.values("user_id").annotate(
        max_score=Max("risk_score"),
        flagged=Count("pk", filter=thresholds.flagged_q()),
        sessions=Count("pk"),
        latest=Max("session_time"),
    )


def _from_summaries(summaries):
    return summaries.values("user_id").annotate(
        max_score=Max("max_risk_score"),
        flagged=Sum("flagged"),
        sessions=Sum("sessions"),
        latest=Max("latest_session_time"),
    )


def _top(rows):
    """Rank the rows of a query in the database and return the first TOP_USERS."""
    return list(
        rows.order_by(F("max_score").desc(nulls_last=True), "-flagged", "user_id")[
            :TOP_USERS
        ]
    )


def _rank_key(row):
    # The database's order: no score last. Both databases compare user IDs
    # by code point (SQLite's BINARY collation, C.UTF-8 on PostgreSQL).
    score = row["max_score"]
    return (score is None, -(score or 0), -row["flagged"], row["user_id"])


def _ranked(rows):
    return sorted(rows, key=_rank_key)[:TOP_USERS]


def _merged(rows):
    """Combine the rows of each user into one."""
    by_user = {}
    for row in rows:
        seen = by_user.get(row["user_id"])
        if seen is None:
            by_user[row["user_id"]] = dict(row)
            continue
        scores = [s for s in (seen["max_score"], row["max_score"]) if s is not None]
        seen["max_score"] = max(scores, default=None)
        seen["flagged"] += row["flagged"]
        seen["sessions"] += row["sessions"]
        seen["latest"] = max(seen["latest"], row["latest"])
    return list(by_user.values())

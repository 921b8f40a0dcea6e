"""The overview's riskiest users: highest score in range first, then most flagged.

Users whose summaries are current (roundtable_sync.user_risk) are read from
them: over all time from ``UserRisk``, over a range from ``UserRiskDay`` for
its whole UTC days plus their sessions in the partial days at either end.
Users with a pending change, and every user while the summaries were counted
at another review threshold, are read from their sessions. Both parts are
exact, so the figure equals grouping every session of the range by user.

Each ranking is one statement, so a refresh that runs meanwhile cannot count
a user twice or not at all, also on SQLite, where each autocommit statement
reads its own snapshot. The database ranks, so ties go by its collation of user IDs, as
everywhere else in the dashboard.
"""

from django.db import connection
from django.db.models import Count, Exists, F, Max, OuterRef, Q, Sum

from dashboard.coverage import DAY, Coverage
from dashboard.sql import datetime_from_db
from roundtable_sync.models import (
    Session,
    UserRisk,
    UserRiskChange,
    UserRiskDay,
    UserRiskState,
)

TOP_USERS = 10
ROW_FIELDS = ["user_id", "max_score", "flagged", "sessions", "latest"]
RANK_ORDER = [F("max_score").desc(nulls_last=True), "-flagged", "user_id"]


def riskiest_users(since, now, thresholds):
    """Return the TOP_USERS users of the range from ``since`` (None: all) to ``now``.

    Rows carry ``user_id``, ``max_score``, ``flagged``, ``sessions`` and
    ``latest`` (newest session time).
    """
    in_range = Q(session_time__lte=now)
    if since is not None:
        in_range &= Q(session_time__gte=since)
    if not _summaries_counted_at(thresholds):
        return _from_sessions_only(in_range, thresholds)
    if since is None:
        rows = _all_time(now, thresholds)
    else:
        rows = _in_range(since, now, in_range, thresholds)
    # A full count at another threshold may have committed in between, and
    # the ranking would then mix flagged counts of two thresholds.
    if not _summaries_counted_at(thresholds):
        return _from_sessions_only(in_range, thresholds)
    return rows


def _summaries_counted_at(thresholds):
    return UserRiskState.objects.filter(review=thresholds.review).exists()


def _from_sessions_only(in_range, thresholds):
    sessions = Session.objects.filter(in_range)
    return list(_from_sessions(sessions, thresholds).order_by(*RANK_ORDER)[:TOP_USERS])


def _in_range(since, now, in_range, thresholds):
    coverage = Coverage.of(since, now, unit=DAY)
    whole_days = UserRiskDay.objects.filter(
        coverage.tally_q("day"), ~_has_pending_change("user_id")
    )
    partial_days = Session.objects.filter(
        coverage.session_q(), ~_has_pending_change("user_id")
    )
    changed_users = Session.objects.filter(in_range, user_id__in=_changed_users())
    parts = _from_summaries(whole_days).union(
        _from_sessions(partial_days, thresholds),
        _from_sessions(changed_users, thresholds),
        all=True,
    )
    return _ranked_per_user(parts)


def _all_time(now, thresholds):
    # A summary counts sessions dated after ``now`` too, so the users with
    # such a session are read from their sessions, like the changed ones.
    later = Q(latest_session_time__gt=now)
    summarized = (
        UserRisk.objects.filter(~later, ~_has_pending_change("user_id"))
        .annotate(max_score=F("max_risk_score"), latest=F("latest_session_time"))
        .values(*ROW_FIELDS)
    )
    changed = Session.objects.filter(
        session_time__lte=now, user_id__in=_changed_users()
    )
    with_later = Session.objects.filter(
        ~_has_pending_change("user_id"),
        session_time__lte=now,
        user_id__in=UserRisk.objects.filter(later).values("user_id"),
    )
    # The parts list different users, so the database can rank their union.
    parts = summarized.union(
        _from_sessions(changed, thresholds),
        _from_sessions(with_later, thresholds),
        all=True,
    )
    return list(parts.order_by(*RANK_ORDER)[:TOP_USERS])


def _has_pending_change(field):
    """Select the rows of users with a pending change, to exclude them.

    NOT EXISTS, not NOT IN, so PostgreSQL plans an anti-join even when many
    changes are pending (after a purge, or while the worker is stopped).
    """
    return Exists(UserRiskChange.objects.filter(user_id=OuterRef(field)))


def _changed_users():
    # IN, not EXISTS, so SQLite reads the sessions of these users only,
    # through the user index, instead of testing every session in range.
    return UserRiskChange.objects.values("user_id")


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


def _ranked_per_user(parts):
    """Combine the rows of each user in ``parts`` and rank them in SQL.

    Django cannot group the rows of a union, so the outer query is written
    here around the union's SQL.
    """
    sql, params = parts.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT user_id, MAX(max_score) AS max_score, SUM(flagged) AS flagged, "
            "SUM(sessions) AS sessions, MAX(latest) AS latest "
            f"FROM ({sql}) AS parts GROUP BY user_id "
            "ORDER BY max_score DESC NULLS LAST, flagged DESC, user_id "
            f"LIMIT {TOP_USERS}",
            params,
        )
        columns = [column[0] for column in cursor.description]
        rows = [dict(zip(columns, values, strict=True)) for values in cursor]
    for row in rows:
        row["latest"] = datetime_from_db(row["latest"])
        # PostgreSQL sums bigint counts to numeric.
        row["flagged"] = int(row["flagged"])
        row["sessions"] = int(row["sessions"])
    return rows

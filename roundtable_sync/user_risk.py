"""Per-user summaries of the sessions, for the overview's riskiest users.

The overview ranks the users of a range by their highest score, then by
their number of flagged sessions. Grouping every session of 30 days or of
all time by user reads hundreds of thousands of sessions. Two tables sum
each user's sessions up instead (highest score, sessions, flagged sessions,
newest session time):

- ``UserRiskDay``: per user and UTC day;
- ``UserRisk``: per user, over all time.

A highest score cannot be kept by adding and subtracting as the hourly
tallies are (roundtable_sync.tallies): a deleted session may have held it.
So triggers on the session table only append the user ID to
``UserRiskChange``, and ``refresh`` recounts the summaries of those users
from their sessions. Readers treat every user still listed there as
unsummarized and read that user's sessions instead, so the figure is exact
before the refresh too.

The flagged count depends on the review threshold, which analysts can
change. ``UserRiskState`` contains the threshold the summaries were counted
with, and ``refresh`` recounts everything when it differs from the current
one. Until then readers ignore the summaries.

NOTE: the flagged count also depends on ``bands.FLAGGED_ACTIONS``, which
the state does not record. A release that changes those actions must
delete the state row in a migration, so that the next refresh recounts.

NOTE: a migration that makes Django rebuild the session table on SQLite
drops the triggers, so it must create them again.
"""

import logging

from django.db import connection, transaction
from django.utils import timezone

from roundtable_sync.bands import FLAGGED_ACTIONS, current_thresholds
from roundtable_sync.models import UserRisk, UserRiskChange, UserRiskDay, UserRiskState
from roundtable_sync.tallies import day_expression, postgres_function

logger = logging.getLogger(__name__)

SESSION_TABLE = "roundtable_sync_session"
USER_RISK = UserRisk._meta.db_table
USER_RISK_DAY = UserRiskDay._meta.db_table
USER_RISK_CHANGE = UserRiskChange._meta.db_table
USER_RISK_STATE = UserRiskState._meta.db_table
# Session columns a summary reads.
SUMMED_COLUMNS = ["user_id", "session_time", "risk_score", "recommended_action"]
# Users recounted per transaction. The busiest users have thousands of
# sessions, and SQLite's polls wait for the write lock while a batch runs.
USERS_PER_BATCH = 200
# Any constant shared by every process, distinct from the tallies' lock. It
# serializes refreshes on PostgreSQL, and a TRUNCATE's clearing of the
# summaries with them.
_POSTGRES_LOCK = 0x7573_7273

_MARK_NEW = f"INSERT INTO {USER_RISK_CHANGE} (user_id) VALUES (NEW.user_id)"
_MARK_OLD = f"INSERT INTO {USER_RISK_CHANGE} (user_id) VALUES (OLD.user_id)"


def _changed(differs):
    return " OR ".join(
        f"OLD.{column} {differs} NEW.{column}" for column in SUMMED_COLUMNS
    )


# Without a state row nothing reads the summaries and the next refresh
# recounts every user, so the SQLite triggers append nothing then. SQLite
# runs one writer at a time, so no refresh can create the state row while a
# trigger runs. Rows that Django's flush leaves behind, when it deletes the
# sessions before the state, only make the next refresh recount users that
# have no sessions left.
_SQLITE_COUNTED = f"EXISTS (SELECT 1 FROM {USER_RISK_STATE})"

SQLITE_FORWARD = [
    f"""CREATE TRIGGER {USER_RISK_CHANGE}_insert AFTER INSERT ON {SESSION_TABLE}
    WHEN {_SQLITE_COUNTED}
    BEGIN
        {_MARK_NEW};
    END""",
    f"""CREATE TRIGGER {USER_RISK_CHANGE}_delete AFTER DELETE ON {SESSION_TABLE}
    WHEN {_SQLITE_COUNTED}
    BEGIN
        {_MARK_OLD};
    END""",
    f"""CREATE TRIGGER {USER_RISK_CHANGE}_update
    AFTER UPDATE OF {", ".join(SUMMED_COLUMNS)} ON {SESSION_TABLE}
    WHEN {_SQLITE_COUNTED} AND ({_changed("IS NOT")})
    BEGIN
        {_MARK_NEW};
        {_MARK_OLD};
    END""",
]
SQLITE_BACKWARD = [
    f"DROP TRIGGER {USER_RISK_CHANGE}_insert",
    f"DROP TRIGGER {USER_RISK_CHANGE}_delete",
    f"DROP TRIGGER {USER_RISK_CHANGE}_update",
]

# PostgreSQL appends a row even before the first count: a trigger cannot
# see the state row of a count that has not committed yet, so skipping
# would lose the changes made while that count runs.
POSTGRES_FORWARD = [
    postgres_function(
        f"{USER_RISK_CHANGE}_row",
        f"""IF TG_OP IN ('INSERT', 'UPDATE') THEN
            {_MARK_NEW};
        END IF;
        IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.user_id <> NEW.user_id) THEN
            {_MARK_OLD};
        END IF;""",
    ),
    f"""CREATE TRIGGER {USER_RISK_CHANGE}_row
    AFTER INSERT OR DELETE ON {SESSION_TABLE}
    FOR EACH ROW EXECUTE FUNCTION {USER_RISK_CHANGE}_row()""",
    # A poll rewrites every column of a changed session, mostly with the
    # same score and time.
    f"""CREATE TRIGGER {USER_RISK_CHANGE}_update
    AFTER UPDATE OF {", ".join(SUMMED_COLUMNS)} ON {SESSION_TABLE}
    FOR EACH ROW WHEN ({_changed("IS DISTINCT FROM")})
    EXECUTE FUNCTION {USER_RISK_CHANGE}_row()""",
    # TRUNCATE fires no row triggers. DELETE, not TRUNCATE, because Django's
    # flush truncates the summaries in the same statement as the sessions.
    postgres_function(
        f"{USER_RISK_CHANGE}_truncate",
        f"PERFORM pg_advisory_xact_lock({_POSTGRES_LOCK}); "
        f"DELETE FROM {USER_RISK}; DELETE FROM {USER_RISK_DAY}; "
        f"DELETE FROM {USER_RISK_CHANGE};",
    ),
    f"""CREATE TRIGGER {USER_RISK_CHANGE}_truncate AFTER TRUNCATE ON {SESSION_TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION {USER_RISK_CHANGE}_truncate()""",
]
POSTGRES_BACKWARD = [
    f"DROP TRIGGER {USER_RISK_CHANGE}_row ON {SESSION_TABLE}",
    f"DROP TRIGGER {USER_RISK_CHANGE}_update ON {SESSION_TABLE}",
    f"DROP FUNCTION {USER_RISK_CHANGE}_row()",
    f"DROP TRIGGER {USER_RISK_CHANGE}_truncate ON {SESSION_TABLE}",
    f"DROP FUNCTION {USER_RISK_CHANGE}_truncate()",
]


def needs_refresh(review):
    """Return True when the summaries lag the sessions or ``review``."""
    state = UserRiskState.objects.first()
    if state is None or state.review != review:
        return True
    return UserRiskChange.objects.exists()


def refresh():
    """Recount the summaries of the users whose sessions changed.

    Recounts every user instead when the review threshold changed since the
    last count, or nothing was counted yet. Returns the number of users
    recounted, or None after a full count.
    """
    review = current_thresholds().review
    with transaction.atomic():
        _lock()
        state = UserRiskState.objects.first()
        if state is None or state.review != review:
            count_all(review)
            return None
    # Rows appended from now on wait for the next run, so a steady stream
    # of polls cannot keep this loop going.
    last = UserRiskChange.objects.order_by("-pk").values_list("pk", flat=True).first()
    recounted = 0
    while last is not None:
        with transaction.atomic():
            _lock()
            # Another worker may have counted everyone at a newer threshold
            # since, and this batch would mix the two.
            if not UserRiskState.objects.filter(review=state.review).exists():
                break
            user_ids = list(
                UserRiskChange.objects.filter(pk__lte=last)
                .order_by()
                .values_list("user_id", flat=True)
                .distinct()[:USERS_PER_BATCH]
            )
            if not user_ids:
                break
            # Before the recount: on PostgreSQL each statement reads what
            # has committed when it starts, so the recount reads at least
            # the sessions of every change this removes.
            _delete_changes(user_ids, last)
            # At the state's threshold even if another took effect since:
            # readers compare theirs with the state's, and the next refresh
            # recounts everyone at the new one.
            _recount(state.review, user_ids)
        recounted += len(user_ids)
    if recounted:
        logger.info("Recounted the risk summaries of %d user(s)", recounted)
    return recounted


def count_all(review):
    """Count the summaries of every user from scratch, at ``review``."""
    started = timezone.now()
    with transaction.atomic():
        _lock()
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {USER_RISK_CHANGE}")
        _recount(review, None)
        UserRiskState.objects.update_or_create(
            pk=1, defaults={"review": review, "counted_at": timezone.now()}
        )
    logger.info(
        "Counted the risk summaries of every user at review threshold %d in %.1f s",
        review,
        (timezone.now() - started).total_seconds(),
    )


def _lock():
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_POSTGRES_LOCK])


def _delete_changes(user_ids, last):
    placeholders = ", ".join(["%s"] * len(user_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {USER_RISK_CHANGE} "
            f"WHERE user_id IN ({placeholders}) AND id <= %s",
            [*user_ids, last],
        )


def _recount(review, user_ids):
    """Replace the summaries of ``user_ids`` (None: every user) with counts."""
    where, params = "", []
    if user_ids is not None:
        placeholders = ", ".join(["%s"] * len(user_ids))
        where, params = f"WHERE user_id IN ({placeholders})", list(user_ids)
    flagged_actions = ", ".join(["%s"] * len(FLAGGED_ACTIONS))
    summed = "max_risk_score, sessions, flagged, latest_session_time"
    day_of = day_expression(connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {USER_RISK_DAY} {where}", params)
        cursor.execute(f"DELETE FROM {USER_RISK} {where}", params)
        cursor.execute(
            f"INSERT INTO {USER_RISK_DAY} (user_id, day, {summed}) "
            f"SELECT user_id, {day_of('session_time')}, MAX(risk_score), COUNT(*), "
            f"SUM(CASE WHEN risk_score >= %s OR recommended_action IN "
            f"({flagged_actions}) THEN 1 ELSE 0 END), MAX(session_time) "
            f"FROM {SESSION_TABLE} {where} "
            f"GROUP BY user_id, {day_of('session_time')}",
            [review, *FLAGGED_ACTIONS, *params],
        )
        cursor.execute(
            f"INSERT INTO {USER_RISK} (user_id, {summed}) "
            "SELECT user_id, MAX(max_risk_score), SUM(sessions), SUM(flagged), "
            f"MAX(latest_session_time) FROM {USER_RISK_DAY} {where} "
            "GROUP BY user_id",
            params,
        )

"""Hourly session and check counts, kept by triggers for the overview.

The overview counts sessions by score, recommended action and check status
over ranges of up to all time. Counting the session and check tables each
time reads a million sessions and fourteen million check rows, which takes
seconds. Two tables count them per UTC hour of ``session_time`` instead:

- ``SessionTally``: sessions per (hour, risk_score, recommended_action);
- ``CheckTally``: check rows per (hour, group, name, status).

Triggers on the session and check tables append a +1 or -1 row for every
insert, delete and change of a counted column, so every write path (polls,
erasure, retention, the shell) keeps the counts exact. An insert locks no
existing tally row. An upsert of one shared row per hour would wait for
other writers, and two polls upserting the same hours in different orders
could deadlock. ``compact`` folds the appended rows of each hour into one row per
key; the dispatcher queues it every minute while there is something to fold.
Readers sum whatever rows there are, folded or not, so they never wait for
it.

For long ranges, ``SessionDayTally`` and ``CheckDayTally`` sum the folded
rows of each UTC day, about a twentieth as many rows. ``compact`` rewrites
the days of the hours it folds in the same transaction, so a reader adds
the day rows and the unfolded hourly rows of a day and counts each session
once.

A check row counts in the hour of its session. Either table's trigger may
fire first (Django's foreign keys are deferred, so a transaction may write
checks before their session), so each side counts only what the other has
not: a check trigger counts nothing while its session is missing, and the
session trigger counts the checks already there.

NOTE: the migrations install the triggers from the SQL below, so a change
here needs a new migration; and a migration that makes Django rebuild the
session or check table on SQLite drops the triggers, so it must create them
again.
"""

import logging
from datetime import timedelta

from django.db import connection, transaction

from roundtable_sync.models import (
    CheckDayTally,
    CheckTally,
    SessionDayTally,
    SessionTally,
)

logger = logging.getLogger(__name__)

SESSION_TABLE = "roundtable_sync_session"
CHECK_TABLE = "roundtable_sync_sessioncheck"
SESSION_TALLY = SessionTally._meta.db_table
CHECK_TALLY = CheckTally._meta.db_table
SESSION_DAY_TALLY = SessionDayTally._meta.db_table
CHECK_DAY_TALLY = CheckDayTally._meta.db_table
# Session columns whose change moves the session or its checks to other keys.
COUNTED_SESSION_COLUMNS = ["session_time", "risk_score", "recommended_action"]
COUNTED_CHECK_COLUMNS = ["session_id", '"group"', "name", "status"]
# Hours folded per transaction. After a purge of many sessions, each hour
# has thousands of rows to fold, and SQLite's polls wait for the write lock
# while a batch runs.
HOURS_PER_BATCH = 24
# Any constant shared by every process. It serializes compactions on
# PostgreSQL, whose concurrent deletes of the same rows could deadlock, and
# a TRUNCATE's clearing of the tallies with them.
_POSTGRES_LOCK = 0x7461_6C6C


def _sqlite_hour(value):
    # Django stores an aware datetime on SQLite as UTC text,
    # "YYYY-MM-DD HH:MM:SS[.ffffff]".
    return f"substr({value}, 1, 13) || ':00:00'"


def _postgres_hour(value):
    return f"date_trunc('hour', {value}, 'UTC')"


def _session_row(hour, row, sign, compacted):
    return (
        f"INSERT INTO {SESSION_TALLY} "
        "(hour, risk_score, recommended_action, sessions, compacted) "
        f"VALUES ({hour(f'{row}.session_time')}, {row}.risk_score, "
        f"{row}.recommended_action, {sign}1, {compacted})"
    )


def _checks_of_session(hour, row, sign, compacted, where=""):
    """Count the check rows of session ``row``, in its hour."""
    return (
        f'INSERT INTO {CHECK_TALLY} (hour, "group", name, status, reports, '
        f'compacted) SELECT {hour(f"{row}.session_time")}, c."group", c.name, '
        f"c.status, {sign}1, {compacted} FROM {CHECK_TABLE} c "
        f"WHERE c.session_id = {row}.session_id{where}"
    )


def _check_row(hour, row, sign, compacted, lock=""):
    """Count check ``row`` in the hour of its session, if the session exists."""
    return (
        f'INSERT INTO {CHECK_TALLY} (hour, "group", name, status, reports, '
        f'compacted) SELECT {hour("s.session_time")}, {row}."group", '
        f"{row}.name, {row}.status, {sign}1, {compacted} FROM {SESSION_TABLE} s "
        f"WHERE s.session_id = {row}.session_id{lock}"
    )


# On PostgreSQL another transaction may be moving a session to another hour
# (the events fetch dates sessions again) while a check trigger reads the
# session's time. The check would then count in the hour its session just
# left. Sharing the row lock makes one wait for the other. SQLite runs one
# writer at a time.
_POSTGRES_SESSION_LOCK = " FOR SHARE OF s"


def _moved_hour(hour):
    return f" AND {hour('OLD.session_time')} <> {hour('NEW.session_time')}"


def _changed(columns, differs="IS NOT"):
    return " OR ".join(f"OLD.{column} {differs} NEW.{column}" for column in columns)


# SQLite's flush (Django's test runner) deletes every table in turn. A delete
# from a tally that is already empty would leave a -1 behind, and a tally is
# never empty while it counts a row, so the triggers skip it then.
def _sqlite_unless_flushed(table):
    return f"EXISTS (SELECT 1 FROM {table})"


def _sqlite_session_delete():
    hour = _sqlite_hour
    return f"""CREATE TRIGGER {SESSION_TALLY}_delete AFTER DELETE ON {SESSION_TABLE}
    BEGIN
        INSERT INTO {SESSION_TALLY}
            (hour, risk_score, recommended_action, sessions, compacted)
        SELECT {hour("OLD.session_time")}, OLD.risk_score,
            OLD.recommended_action, -1, 0
        WHERE {_sqlite_unless_flushed(SESSION_TALLY)};
        {_checks_of_session(hour, "OLD", "-", 0)}
            AND {_sqlite_unless_flushed(CHECK_TALLY)};
    END"""


SQLITE_FORWARD = [
    f"""CREATE TRIGGER {SESSION_TALLY}_insert AFTER INSERT ON {SESSION_TABLE}
    BEGIN
        {_session_row(_sqlite_hour, "NEW", "+", 0)};
        {_checks_of_session(_sqlite_hour, "NEW", "+", 0)};
    END""",
    _sqlite_session_delete(),
    f"""CREATE TRIGGER {SESSION_TALLY}_update
    AFTER UPDATE OF {", ".join(COUNTED_SESSION_COLUMNS)} ON {SESSION_TABLE}
    WHEN {_changed(COUNTED_SESSION_COLUMNS)}
    BEGIN
        {_session_row(_sqlite_hour, "OLD", "-", 0)};
        {_session_row(_sqlite_hour, "NEW", "+", 0)};
        {_checks_of_session(_sqlite_hour, "OLD", "-", 0, _moved_hour(_sqlite_hour))};
        {_checks_of_session(_sqlite_hour, "NEW", "+", 0, _moved_hour(_sqlite_hour))};
    END""",
    f"""CREATE TRIGGER {CHECK_TALLY}_insert AFTER INSERT ON {CHECK_TABLE}
    BEGIN
        {_check_row(_sqlite_hour, "NEW", "+", 0)};
    END""",
    f"""CREATE TRIGGER {CHECK_TALLY}_delete AFTER DELETE ON {CHECK_TABLE}
    BEGIN
        {_check_row(_sqlite_hour, "OLD", "-", 0)}
            AND {_sqlite_unless_flushed(CHECK_TALLY)};
    END""",
    f"""CREATE TRIGGER {CHECK_TALLY}_update
    AFTER UPDATE OF {", ".join(COUNTED_CHECK_COLUMNS)} ON {CHECK_TABLE}
    BEGIN
        {_check_row(_sqlite_hour, "OLD", "-", 0)};
        {_check_row(_sqlite_hour, "NEW", "+", 0)};
    END""",
]
SQLITE_BACKWARD = [
    f"DROP TRIGGER {SESSION_TALLY}_insert",
    f"DROP TRIGGER {SESSION_TALLY}_delete",
    f"DROP TRIGGER {SESSION_TALLY}_update",
    f"DROP TRIGGER {CHECK_TALLY}_insert",
    f"DROP TRIGGER {CHECK_TALLY}_delete",
    f"DROP TRIGGER {CHECK_TALLY}_update",
]


def postgres_function(name, body):
    return f"""CREATE FUNCTION {name}() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        {body}
        RETURN NULL;
    END
    $$"""


_PG_SESSION_BODY = f"""
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            {_session_row(_postgres_hour, "OLD", "-", "false")};
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            {_session_row(_postgres_hour, "NEW", "+", "false")};
        END IF;
        IF TG_OP = 'INSERT' THEN
            {_checks_of_session(_postgres_hour, "NEW", "+", "false")};
        ELSIF TG_OP = 'DELETE' THEN
            {_checks_of_session(_postgres_hour, "OLD", "-", "false")};
        ELSIF {_postgres_hour("OLD.session_time")}
                <> {_postgres_hour("NEW.session_time")} THEN
            {_checks_of_session(_postgres_hour, "OLD", "-", "false")};
            {_checks_of_session(_postgres_hour, "NEW", "+", "false")};
        END IF;"""
_PG_CHECK_BODY = f"""
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            {_check_row(_postgres_hour, "OLD", "-", "false", _POSTGRES_SESSION_LOCK)};
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            {_check_row(_postgres_hour, "NEW", "+", "false", _POSTGRES_SESSION_LOCK)};
        END IF;"""

POSTGRES_FORWARD = [
    postgres_function(f"{SESSION_TALLY}_row", _PG_SESSION_BODY),
    f"""CREATE TRIGGER {SESSION_TALLY}_row
    AFTER INSERT OR DELETE ON {SESSION_TABLE}
    FOR EACH ROW EXECUTE FUNCTION {SESSION_TALLY}_row()""",
    # A poll rewrites every column of a changed session, mostly with the
    # same score and time.
    f"""CREATE TRIGGER {SESSION_TALLY}_update
    AFTER UPDATE OF {", ".join(COUNTED_SESSION_COLUMNS)} ON {SESSION_TABLE}
    FOR EACH ROW
    WHEN ({_changed(COUNTED_SESSION_COLUMNS, "IS DISTINCT FROM")})
    EXECUTE FUNCTION {SESSION_TALLY}_row()""",
    postgres_function(f"{CHECK_TALLY}_row", _PG_CHECK_BODY),
    f"""CREATE TRIGGER {CHECK_TALLY}_row
    AFTER INSERT OR DELETE OR UPDATE OF {", ".join(COUNTED_CHECK_COLUMNS)}
    ON {CHECK_TABLE} FOR EACH ROW EXECUTE FUNCTION {CHECK_TALLY}_row()""",
    # TRUNCATE fires no row triggers. DELETE, not TRUNCATE, because Django's
    # flush truncates the tallies in the same statement as the sessions, and
    # PostgreSQL raises an error on truncating a table that statement uses.
    # The lock waits for a running compact(), whose folded rows this DELETE
    # would not see otherwise.
    postgres_function(
        f"{SESSION_TALLY}_truncate",
        f"PERFORM pg_advisory_xact_lock({_POSTGRES_LOCK}); "
        f"DELETE FROM {SESSION_TALLY}; DELETE FROM {CHECK_TALLY};",
    ),
    f"""CREATE TRIGGER {SESSION_TALLY}_truncate AFTER TRUNCATE ON {SESSION_TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION {SESSION_TALLY}_truncate()""",
    postgres_function(
        f"{CHECK_TALLY}_truncate",
        f"PERFORM pg_advisory_xact_lock({_POSTGRES_LOCK}); DELETE FROM {CHECK_TALLY};",
    ),
    f"""CREATE TRIGGER {CHECK_TALLY}_truncate AFTER TRUNCATE ON {CHECK_TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION {CHECK_TALLY}_truncate()""",
]
POSTGRES_BACKWARD = [
    f"DROP TRIGGER {SESSION_TALLY}_row ON {SESSION_TABLE}",
    f"DROP TRIGGER {SESSION_TALLY}_update ON {SESSION_TABLE}",
    f"DROP FUNCTION {SESSION_TALLY}_row()",
    f"DROP TRIGGER {CHECK_TALLY}_row ON {CHECK_TABLE}",
    f"DROP FUNCTION {CHECK_TALLY}_row()",
    f"DROP TRIGGER {SESSION_TALLY}_truncate ON {SESSION_TABLE}",
    f"DROP FUNCTION {SESSION_TALLY}_truncate()",
    f"DROP TRIGGER {CHECK_TALLY}_truncate ON {CHECK_TABLE}",
    f"DROP FUNCTION {CHECK_TALLY}_truncate()",
]


# The day tallies' own truncate triggers, so that the migration that added
# them left the hourly tallies' functions as they were.
POSTGRES_DAY_FORWARD = [
    postgres_function(
        f"{SESSION_DAY_TALLY}_truncate",
        f"PERFORM pg_advisory_xact_lock({_POSTGRES_LOCK}); "
        f"DELETE FROM {SESSION_DAY_TALLY}; DELETE FROM {CHECK_DAY_TALLY};",
    ),
    f"""CREATE TRIGGER {SESSION_DAY_TALLY}_truncate AFTER TRUNCATE ON {SESSION_TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION {SESSION_DAY_TALLY}_truncate()""",
    postgres_function(
        f"{CHECK_DAY_TALLY}_truncate",
        f"PERFORM pg_advisory_xact_lock({_POSTGRES_LOCK}); "
        f"DELETE FROM {CHECK_DAY_TALLY};",
    ),
    f"""CREATE TRIGGER {CHECK_DAY_TALLY}_truncate AFTER TRUNCATE ON {CHECK_TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION {CHECK_DAY_TALLY}_truncate()""",
]
POSTGRES_DAY_BACKWARD = [
    f"DROP TRIGGER {SESSION_DAY_TALLY}_truncate ON {SESSION_TABLE}",
    f"DROP FUNCTION {SESSION_DAY_TALLY}_truncate()",
    f"DROP TRIGGER {CHECK_DAY_TALLY}_truncate ON {CHECK_TABLE}",
    f"DROP FUNCTION {CHECK_DAY_TALLY}_truncate()",
]


def _hour_expression(vendor):
    return _postgres_hour if vendor == "postgresql" else _sqlite_hour


def count_existing(db_connection=None):
    """Count every stored session and check from scratch, as folded rows.

    For the migration that adds the tallies, and after a bulk load. The
    caller empties the tallies first. ``db_connection`` defaults to the
    default database's connection.
    """
    db_connection = db_connection or connection
    hour = _hour_expression(db_connection.vendor)
    with db_connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {SESSION_TALLY} "
            "(hour, risk_score, recommended_action, sessions, compacted) "
            f"SELECT {hour('session_time')}, risk_score, recommended_action, "
            f"COUNT(*), %s FROM {SESSION_TABLE} "
            f"GROUP BY {hour('session_time')}, risk_score, recommended_action",
            [True],
        )
        cursor.execute(
            f'INSERT INTO {CHECK_TALLY} (hour, "group", name, status, reports, '
            f'compacted) SELECT {hour("s.session_time")}, c."group", c.name, '
            f"c.status, COUNT(*), %s FROM {CHECK_TABLE} c "
            f"JOIN {SESSION_TABLE} s ON s.session_id = c.session_id "
            f'GROUP BY {hour("s.session_time")}, c."group", c.name, c.status',
            [True],
        )


# (model, day model, key columns besides the hour, count column) of each tally.
_TALLIES = [
    (SessionTally, SessionDayTally, ["risk_score", "recommended_action"], "sessions"),
    (CheckTally, CheckDayTally, ['"group"', "name", "status"], "reports"),
]


def compact():
    """Fold each hour's appended rows into one row per key.

    Keys whose count has dropped to zero are removed. Each batch of hours is
    one transaction, so a poll storing sessions meanwhile only waits for a
    batch on SQLite and never on PostgreSQL. Returns the number of hours
    folded.
    """
    folded = set()
    for model, day_model, keys, count in _TALLIES:
        # Rows appended from now on wait for the next run, so a steady stream
        # of polls cannot keep this loop going.
        last = model.objects.order_by("-pk").values_list("pk", flat=True).first()
        while True:
            with transaction.atomic():
                hours = list(
                    model.objects.filter(compacted=False, pk__lte=last or 0)
                    .order_by()
                    .values_list("hour", flat=True)
                    .distinct()[:HOURS_PER_BATCH]
                )
                if not hours:
                    break
                _fold(model._meta.db_table, ["hour", *keys], count, hours)
                _sum_days(model, day_model, keys, count, hours)
            folded.update(hours)
    if folded:
        logger.info("Folded the tallies of %d hour(s)", len(folded))
    return len(folded)


def _fold(table, keys, count, hours):
    columns = ", ".join(keys)
    params = [connection.ops.adapt_datetimefield_value(hour) for hour in hours]
    folded_sum = (
        f"SELECT {columns}, SUM({count}), %s FROM {{rows}} GROUP BY {columns} "
        f"HAVING SUM({count}) <> 0"
    )
    insert = f"INSERT INTO {table} ({columns}, {count}, compacted) "
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_POSTGRES_LOCK])
            # One statement, so exactly the rows it deletes are summed, even
            # while triggers append more.
            cursor.execute(
                f"WITH gone AS (DELETE FROM {table} WHERE hour = ANY(%s) "
                f"RETURNING {columns}, {count}) "
                + insert
                + folded_sum.format(rows="gone"),
                [params, True],
            )
            return
        # SQLite runs one writing transaction at a time, so no trigger adds
        # rows between these statements.
        cursor.execute(f"SELECT MAX(id) FROM {table}")
        (last,) = cursor.fetchone()
        placeholders = ", ".join(["%s"] * len(params))
        selected = f"hour IN ({placeholders}) AND id <= %s"
        cursor.execute(
            insert + folded_sum.format(rows=f"{table} WHERE {selected}"),
            [True, *params, last],
        )
        cursor.execute(f"DELETE FROM {table} WHERE {selected}", [*params, last])


def _sum_days(model, day_model, keys, count, hours):
    """Write the day rows of the days of ``hours`` again from the folded hours."""
    days = sorted({hour.replace(hour=0) for hour in hours})
    params = [connection.ops.adapt_datetimefield_value(day) for day in days]
    bounds = []
    for day in days:
        bounds.append(connection.ops.adapt_datetimefield_value(day))
        bounds.append(connection.ops.adapt_datetimefield_value(day + timedelta(days=1)))
    columns = ", ".join(keys)
    day_of = day_expression(connection.vendor)
    in_days = " OR ".join(["(hour >= %s AND hour < %s)"] * len(days))
    placeholders = ", ".join(["%s"] * len(days))
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {day_model._meta.db_table} WHERE day IN ({placeholders})",
            params,
        )
        cursor.execute(
            f"INSERT INTO {day_model._meta.db_table} (day, {columns}, {count}) "
            f"SELECT {day_of('hour')}, {columns}, SUM({count}) "
            f"FROM {model._meta.db_table} WHERE compacted = %s AND ({in_days}) "
            f"GROUP BY {day_of('hour')}, {columns} HAVING SUM({count}) <> 0",
            [True, *bounds],
        )


def count_days(db_connection=None):
    """Sum every folded hour into day rows, for the migration and a bulk load.

    The caller empties the day tallies first.
    """
    db_connection = db_connection or connection
    day_of = day_expression(db_connection.vendor)
    with db_connection.cursor() as cursor:
        for model, day_model, keys, count in _TALLIES:
            columns = ", ".join(keys)
            cursor.execute(
                f"INSERT INTO {day_model._meta.db_table} (day, {columns}, {count}) "
                f"SELECT {day_of('hour')}, {columns}, SUM({count}) "
                f"FROM {model._meta.db_table} WHERE compacted = %s "
                f"GROUP BY {day_of('hour')}, {columns} HAVING SUM({count}) <> 0",
                [True],
            )


def day_expression(vendor):
    """Return a function making the SQL of the UTC day that a datetime falls in."""
    if vendor == "postgresql":
        return lambda value: f"date_trunc('day', {value}, 'UTC')"
    return lambda value: f"substr({value}, 1, 10) || ' 00:00:00'"


def has_unfolded_rows():
    return any(model.objects.filter(compacted=False).exists() for model, *_ in _TALLIES)

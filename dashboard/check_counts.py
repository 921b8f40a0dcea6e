"""Per-check status counts of one user, for the user page.

The counts come from the ``checks`` JSON of the user's sessions rather than
the SessionCheck table, so the query reads only the user's sessions, which
the session table's user index finds. A join with the check table let
PostgreSQL, with its default random_page_cost, choose a full scan of all
check rows for a user with a few thousand sessions. The JSON also contains
the checks whose name or status is too long for the check table.
"""

from django.db import connection

from dashboard.sql import datetime_from_db
from roundtable_sync.checks import ordered_check_keys
from roundtable_sync.models import CheckGroup, Session

# One row per (group, name, status): its sessions and the earliest of them.
# Session.checks is {"biometric": {name: status}, "device": {name: status}}.
# Each group is expanded on its own. PostgreSQL estimates 100 rows for every
# call of a set-returning function, so two nested calls made it estimate
# 10,000 checks a session. For a user with a few thousand sessions it then
# spent most of a second compiling the query with JIT.
_STATUS_COUNTS_SQL = {
    "sqlite": """
        SELECT grp.name, chk.key, chk.value, COUNT(*), MIN(s.session_time)
        FROM {session} s
        CROSS JOIN ({groups}) grp
        CROSS JOIN json_each(s.checks, '$.' || grp.name) chk
        WHERE s.user_id = %s AND json_type(s.checks, '$.' || grp.name) = 'object'
        GROUP BY grp.name, chk.key, chk.value
    """,
    "postgresql": """
        SELECT grp.name, chk.key, chk.value, COUNT(*), MIN(s.session_time)
        FROM {session} s
        CROSS JOIN ({groups}) grp
        CROSS JOIN LATERAL jsonb_each_text(
            CASE WHEN jsonb_typeof(s.checks -> grp.name) = 'object'
            THEN s.checks -> grp.name END
        ) chk
        WHERE s.user_id = %s
        GROUP BY grp.name, chk.key, chk.value
    """,
}

# The count column of each documented status. Any other status counts as "other".
_STATUS_COLUMNS = {
    "Detected": "detected",
    "Not detected": "not_detected",
    "Unknown": "unknown",
}


def check_counts(user_id, session_count):
    """Return per-check status counts and first detection time of one user.

    Each row contains the group, name, a count per status column, the total,
    ``not_reported`` (those of the user's ``session_count`` sessions that
    came without the check) and ``first_detected_at``. Documented checks come
    first in Roundtable's order.
    """
    by_key = {}
    for group, name, status, sessions, earliest in _status_counts(user_id):
        row = by_key.setdefault((group, name), _empty_row(group, name))
        row[_STATUS_COLUMNS.get(status, "other")] += sessions
        row["total"] += sessions
        if status == "Detected":
            row["first_detected_at"] = datetime_from_db(earliest)
    for row in by_key.values():
        # A poll may store a session between the view's count and this
        # query, so a check's total can exceed the count.
        row["not_reported"] = max(session_count - row["total"], 0)
    return [by_key[key] for key in ordered_check_keys(by_key)]


def _status_counts(user_id):
    sql = _STATUS_COUNTS_SQL[connection.vendor].format(
        session=connection.ops.quote_name(Session._meta.db_table),
        groups=" UNION ALL ".join(["SELECT %s AS name"] * len(CheckGroup.values)),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*CheckGroup.values, user_id])
        return cursor.fetchall()


def _empty_row(group, name):
    row = {"group": group, "name": name, "total": 0, "first_detected_at": None}
    row.update(dict.fromkeys([*_STATUS_COLUMNS.values(), "other"], 0))
    return row

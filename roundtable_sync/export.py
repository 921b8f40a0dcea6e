"""CSV export of stored sessions, shared by export_sessions and the web UI."""

from contextlib import closing

from django.db import connection

from roundtable_sync.checks import ordered_check_keys
from roundtable_sync.export_rows import LINE_END, csv_cell, line_batches
from roundtable_sync.export_rows import neutralize as neutralize
from roundtable_sync.models import SessionCheck

SESSION_COLUMNS = [
    "user_id",
    "session_id",
    "session_time",
    "session_time_source",
    "risk_score",
    "recommended_action",
    "risk_explanation",
    "tags",
]
# The session's current (newest) decision, empty when undecided.
DECISION_COLUMNS = ["decision", "decided_by", "decided_at"]
BASE_COLUMNS = [*SESSION_COLUMNS, *DECISION_COLUMNS]


def check_columns(sessions):
    """Return [(group, name, header)] for checks present in ``sessions``.

    A header is the bare check name unless the name occurs in both groups
    or equals a base column, in which case it gets its group as a prefix.
    """
    if sessions.query.where:
        # Proportional to the matching sessions, through the unique index
        # that starts with the session.
        present = set(
            SessionCheck.objects.filter(session__in=sessions.values("pk"))
            .values_list("group", "name")
            .distinct()
        )
    else:
        present = _all_check_keys()
    # Checks too long for the SessionCheck table are rare: read their maps.
    for checks in sessions.filter(has_unindexed_checks=True).values_list(
        "checks", flat=True
    ):
        present.update(
            (group, name) for group, statuses in checks.items() for name in statuses
        )
    keys = ordered_check_keys(present)
    names = [name for _, name in keys]
    return [
        (group, name, f"{group}.{name}" if _collides(name, names) else name)
        for group, name in keys
    ]


# Walks the (name, group, status) index from one check name to the next, and
# reads the first and last group of each name: a few index seeks per name
# instead of reading every check row. There are only two groups.
_DISTINCT_CHECKS_SQL = """
WITH RECURSIVE names (name) AS (
    SELECT MIN(name) FROM {table}
    UNION ALL
    SELECT (SELECT MIN(name) FROM {table} WHERE name > names.name)
    FROM names
    WHERE names.name IS NOT NULL
)
SELECT (SELECT MIN("group") FROM {table} WHERE name = names.name), name
FROM names WHERE name IS NOT NULL
UNION
SELECT (SELECT MAX("group") FROM {table} WHERE name = names.name), name
FROM names WHERE name IS NOT NULL
"""


def _all_check_keys():
    """Return every (group, name) in the SessionCheck table."""
    table = connection.ops.quote_name(SessionCheck._meta.db_table)
    sql = _DISTINCT_CHECKS_SQL.format(table=table)
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return set(cursor.fetchall())


def _collides(name, names):
    return names.count(name) > 1 or name in BASE_COLUMNS


def write_sessions_csv(sessions, output):
    """Write one CSV row per session to the text stream ``output``.

    Returns the number of data rows written.
    """
    columns = check_columns(sessions)
    output.write(_header_line(columns))
    count = 0
    with closing(line_batches(sessions, columns)) as batches:
        for lines in batches:
            output.write("".join(lines))
            count += len(lines)
    return count


def stream_sessions_csv(sessions):
    """Yield the CSV of ``sessions`` as lists of lines, for a streaming response.

    The first list contains the header line, and each later one a batch of data
    lines, so a response sends a few large chunks instead of a chunk per line.
    """
    columns = check_columns(sessions)
    yield [_header_line(columns)]
    with closing(line_batches(sessions, columns)) as batches:
        yield from batches


def _header_line(columns):
    headers = BASE_COLUMNS + [header for _, _, header in columns]
    return ",".join(csv_cell(header) for header in headers) + LINE_END

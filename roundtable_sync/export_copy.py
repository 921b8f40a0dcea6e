"""The data lines of the CSV export on PostgreSQL.

The query returns every cell as text with formula prefixes neutralized (or
NULL when empty), so Python only quotes and joins them with csv.writer.
"""

import csv

from django.db import connection

from roundtable_sync.formulas import LEADING_WHITESPACE
from roundtable_sync.models import Session

CHUNK_SIZE = 2000
# The characters ltrim strips before looking for a formula prefix.
_WHITESPACE = " || ".join(f"chr({ord(char)})" for char in LEADING_WHITESPACE)


def line_batches(sessions, columns):
    """Yield lists of CSV lines, one per session, oldest session first.

    A server-side cursor, not COPY: COPY would hold the connection until the
    last row, and a download's generator may pause or stop part-way while
    the same connection records the export in the audit trail.
    """
    sql, params = _select(sessions, columns)
    writer = csv.writer(_Line())
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while batch := cursor.fetchmany(CHUNK_SIZE):
            yield [writer.writerow(row) for row in batch]


class _Line:
    """A file-like object whose write() returns the text, for csv.writer."""

    def write(self, text):
        return text


def _select(sessions, columns):
    """Return (sql, params) of the export's rows as neutralized text cells.

    The inner query reads each value once; OFFSET 0 keeps PostgreSQL from
    merging it into the outer one, which would repeat the tags subquery in
    every branch of the cell expression.
    """
    values = [
        "s.user_id",
        "s.session_id",
        "s.session_time",
        "s.session_time_source",
        "CAST(s.risk_score AS TEXT)",
        "s.recommended_action",
        "s.risk_explanation",
        "(SELECT string_agg(t.value, ';' ORDER BY t.position) "
        "FROM jsonb_array_elements_text(s.tags) WITH ORDINALITY AS t(value, position))",
        "d.kind",
        "d.decided_by_label",
        "d.decided_at",
    ]
    params = []
    for group, name, _ in columns:
        values.append("s.checks -> %s ->> %s")
        params += [group, name]
    times = {2, 10}
    cells = [
        _iso_time(f"v.c{i}") if i in times else _cell(f"v.c{i}")
        for i in range(len(values))
    ]
    where = ""
    if sessions.query.where:
        subquery, filter_params = sessions.values("pk").query.sql_with_params()
        where = f"WHERE s.session_id IN ({subquery})"
        params += filter_params
    inner = ", ".join(f"{value} AS c{i}" for i, value in enumerate(values))
    sql = f"""
        SELECT {", ".join(cells)}
        FROM (
            SELECT {inner}
            FROM {connection.ops.quote_name(Session._meta.db_table)} s
            LEFT JOIN LATERAL (
                SELECT kind, decided_by_label, decided_at
                FROM reviews_decision
                WHERE reviews_decision.session_id = s.session_id
                ORDER BY decided_at DESC, id DESC
                LIMIT 1
            ) d ON true
            {where}
            ORDER BY s.session_time, s.session_id
            OFFSET 0
        ) v
        ORDER BY v.c2, v.c1
    """
    return sql, params


def _cell(value):
    # Formula prefixes behind leading whitespace count too, as in
    # export_rows.neutralize.
    neutral = (
        f"CASE WHEN left({value}, 1) IN (chr(9), chr(13)) "
        f"OR left(ltrim({value}, {_WHITESPACE}), 1) IN ('=', '+', '-', '@') "
        f"THEN '''' || {value} ELSE {value} END"
    )
    return f"NULLIF({neutral}, '')"


def _iso_time(value):
    """Return SQL for the time ``value`` as isoformat() in UTC, with a Z."""
    utc = f"({value} AT TIME ZONE 'UTC')"
    return (
        f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || "
        f"CASE WHEN mod(extract(microseconds FROM {utc})::bigint, 1000000) = 0 "
        f"THEN '' ELSE to_char({utc}, '.US') END || 'Z'"
    )

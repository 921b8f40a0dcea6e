"""The data lines of the CSV export, formatted mostly by the database.

A million-row export spends its time per cell, so the database formats the
session's own columns and the newest decision as finished CSV text: times in
ISO 8601, formula prefixes neutralized and quoting as csv.writer does it.
Python adds the tags and check cells, whose JSON values repeat across
sessions, from caches keyed by that JSON text. The result is byte for byte
what csv.writer writes for the neutralized values.
"""

import json
import re

from django.db import connection

from roundtable_sync import export_copy
from roundtable_sync.formulas import FORMULA_PREFIXES, LEADING_WHITESPACE
from roundtable_sync.models import Session

CHUNK_SIZE = 2000
_WHITESPACE_CODES = ", ".join(str(ord(char)) for char in LEADING_WHITESPACE)
# csv.writer's default line terminator.
LINE_END = "\r\n"
_NEEDS_QUOTES = re.compile('[,"\r\n]')
_EMPTY = {}
# Distinct tag lists and check maps kept formatted. Each entry is a few
# hundred bytes; the caches restart when full, so memory stays flat.
CACHE_LIMIT = 20_000


def line_batches(sessions, columns):
    """Yield lists of CSV lines, one per session, oldest session first.

    ``sessions`` is a Session queryset, possibly filtered; ``columns`` are
    the (group, name, header) check columns of the export.
    """
    if connection.vendor == "postgresql":
        return export_copy.line_batches(sessions, columns)
    return _sqlite_line_batches(sessions, columns)


def _sqlite_line_batches(sessions, columns):
    sql, params = _row_query(sessions)
    tags_cells = _Cells(lambda tags: "," + csv_cell(";".join(json.loads(tags))))
    value_cells = _Cells(lambda value: "," + csv_cell(value))
    keys = [(group, name) for group, name, _ in columns]

    def check_cells(text):
        checks = json.loads(text)
        return "".join(
            [value_cells[checks.get(group, _EMPTY).get(name)] for group, name in keys]
        )

    checks_cells = _Cells(check_cells)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while batch := cursor.fetchmany(CHUNK_SIZE):
            yield [
                session
                + tags_cells[tags]
                + (decision or ",,,")
                + checks_cells[checks]
                + LINE_END
                for session, tags, decision, checks in batch
            ]


def neutralize(value):
    """Return a CSV cell that a spreadsheet shows as text, never runs."""
    if value is None:
        return ""
    text = str(value)
    if text.startswith(FORMULA_PREFIXES) or text.lstrip(LEADING_WHITESPACE).startswith(
        FORMULA_PREFIXES
    ):
        return "'" + text
    return text


def csv_cell(value):
    """Return ``value`` as one neutralized CSV cell, quoted as csv.writer does.

    The csv module's default dialect quotes a field that contains the
    delimiter, the quote character or a line break, and doubles its quotes.
    """
    text = neutralize(value)
    if _NEEDS_QUOTES.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


class _Cells(dict):
    """Formatted cells by the value they format, computed on first use.

    A dict, so that a hit costs one lookup in C; it empties when full, which
    keeps memory flat however many distinct values an export meets.
    """

    def __init__(self, format):
        super().__init__()
        self.format = format

    def __missing__(self, key):
        if len(self) >= CACHE_LIMIT:
            self.clear()
        cells = self[key] = self.format(key)
        return cells


def _row_query(sessions):
    """Return (sql, params) of the rows: (session cells, tags, decision, checks).

    The session cells are the first seven columns as CSV text; the decision
    is ``,kind,analyst,time`` of the newest decision, or NULL.
    """
    session = " || ',' || ".join(
        [
            _cell("s.user_id"),
            _cell("s.session_id"),
            _iso_time("s.session_time"),
            _cell("s.session_time_source"),
            _cell("CAST(s.risk_score AS TEXT)"),
            _cell("s.recommended_action"),
            _cell("s.risk_explanation"),
        ]
    )
    decision = " || ',' || ".join(
        [_cell("d.kind"), _cell("d.decided_by_label"), _iso_time("d.decided_at")]
    )
    where, params = "", []
    if sessions.query.where:
        subquery, params = sessions.values("pk").query.sql_with_params()
        where = f"WHERE s.session_id IN ({subquery})"
    query = f"""
        SELECT
            {session},
            s.tags,
            (
                SELECT ',' || {decision}
                FROM reviews_decision d
                WHERE d.session_id = s.session_id
                ORDER BY d.decided_at DESC, d.id DESC
                LIMIT 1
            ),
            s.checks
        FROM {connection.ops.quote_name(Session._meta.db_table)} s
        {where}
        ORDER BY s.session_time, s.session_id
    """
    return query, params


# A GLOB pattern matching text with a comma, quote, CR or LF. SQLite computes
# this constant once per statement.
_SPECIAL = "'*[,\"' || char(13) || char(10) || ']*'"


def _cell(value):
    """Return SQLite SQL that formats the text ``value`` as csv_cell does."""
    neutral = (
        f"(CASE WHEN substr({value}, 1, 1) IN (char(9), char(13)) "
        f"OR substr(ltrim({value}, char({_WHITESPACE_CODES})), 1, 1) "
        "IN ('=', '+', '-', '@') "
        f"THEN '''' || {value} ELSE {value} END)"
    )
    quoted = f"'\"' || replace({neutral}, '\"', '\"\"') || '\"'"
    return (
        f"COALESCE(CASE WHEN {value} GLOB {_SPECIAL} "
        f"THEN {quoted} ELSE {neutral} END, '')"
    )


def _iso_time(value):
    # Django stores SQLite times as naive UTC text such as
    # "2026-06-14 17:35:52.924000", without the fraction when it is zero,
    # as datetime.isoformat() writes it.
    return f"replace({value}, ' ', 'T') || 'Z'"

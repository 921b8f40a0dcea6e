"""The data lines of the CSV export, formatted mostly by the database.

A million-row export spends its time per cell, so the database keeps each
session's own cells as finished CSV text in the export table
(roundtable_sync/export_lines.py) and formats the newest decision the same
way: times in ISO 8601, formula prefixes neutralized and quoting as
csv.writer does it. Python adds the check cells, whose JSON maps repeat
across sessions, from a cache keyed by that JSON text. The result is byte
for byte what csv.writer writes for the neutralized values.
"""

import json
import re

from django.db import connection

from roundtable_sync import export_lines
from roundtable_sync.formulas import FORMULA_PREFIXES, LEADING_WHITESPACE

CHUNK_SIZE = 2000
# csv.writer's default line terminator.
LINE_END = "\r\n"
_NEEDS_QUOTES = re.compile('[,"\r\n]')
_EMPTY = {}
# Distinct check maps kept formatted. Each entry is a few hundred bytes; the
# cache restarts when full, so memory stays flat.
CACHE_LIMIT = 20_000


def line_batches(sessions, columns):
    """Yield lists of CSV lines, one per session, oldest session first.

    ``sessions`` is a Session queryset, possibly filtered; ``columns`` are
    the (group, name, header) check columns of the export. On PostgreSQL the
    rows come through a server-side cursor, not COPY: COPY would hold the
    connection until the last row, and a download's generator may pause or
    stop part-way while the same connection records the export in the audit
    trail.
    """
    sql, params = _row_query(sessions)
    value_cells = _Cells(lambda value: "," + csv_cell(value))
    keys = [(group, name) for group, name, _ in columns]

    def check_cells(text):
        checks = json.loads(text)
        return "".join(
            [value_cells[checks.get(group, _EMPTY).get(name)] for group, name in keys]
        )

    checks_cells = _Cells(check_cells)
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while batch := cursor.fetchmany(CHUNK_SIZE):
            yield [
                head + (decision or ",,,") + checks_cells[checks] + LINE_END
                for head, decision, checks in batch
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
    """Return (sql, params) of the rows: (head, decision, checks).

    The decision is ``,kind,analyst,time`` of the newest decision, or NULL.
    """
    if connection.vendor == "postgresql":
        cell = f"{export_lines.POSTGRES_CELL_FUNCTION}({{}})".format
        iso_time = f"{export_lines.POSTGRES_TIME_FUNCTION}({{}})".format
    else:
        cell, iso_time = export_lines.sqlite_cell, export_lines.sqlite_iso_time
    decision = " || ',' || ".join(
        [cell("d.kind"), cell("d.decided_by_label"), iso_time("d.decided_at")]
    )
    where, params = "", []
    if sessions.query.where:
        subquery, params = sessions.values("session_time", "pk").query.sql_with_params()
        where = f"WHERE (e.session_time, e.session_id) IN ({subquery})"
    query = f"""
        SELECT
            e.head,
            (
                SELECT ',' || {decision}
                FROM reviews_decision d
                WHERE d.session_id = e.session_id
                ORDER BY d.decided_at DESC, d.id DESC
                LIMIT 1
            ),
            e.checks
        FROM {export_lines.TABLE} e
        {where}
        ORDER BY e.session_time, e.session_id
    """
    return query, params

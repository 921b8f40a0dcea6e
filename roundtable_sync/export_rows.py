"""The data lines of the CSV export, formatted mostly by the database.

A million-row export spends its time per cell, so the database keeps each
session's own cells as finished CSV text in the export table
(roundtable_sync/export_lines.py) and formats the newest decision the same
way: times in ISO 8601, formula prefixes neutralized and quoting as
csv.writer does it. Python adds the check cells, whose JSON maps repeat
across sessions, from caches keyed by each group's JSON text. The result is
byte for byte what csv.writer writes for the neutralized values.
"""

import contextlib
import itertools
import json
import re

from django.db import connection, transaction

from roundtable_sync import export_lines
from roundtable_sync.formulas import FORMULA_PREFIXES, LEADING_WHITESPACE

CHUNK_SIZE = 2000
# csv.writer's default line terminator.
LINE_END = "\r\n"
_NEEDS_QUOTES = re.compile('[,"\r\n]')
_EMPTY = {}
# Distinct check maps kept formatted, per run of columns. Each entry is a few
# hundred bytes, and a cache restarts when full, so memory stays flat.
CACHE_LIMIT = 20_000


def line_batches(sessions, columns):
    """Yield lists of CSV lines, one per session, oldest session first.

    ``sessions`` is a Session queryset, possibly filtered; ``columns`` are
    the (group, name, header) check columns of the export. On PostgreSQL the
    rows come through a server-side cursor, not COPY: COPY would hold the
    connection until the last row, and a download's generator may pause or
    stop part-way while the same connection records the export in the audit
    trail. The caller must close the generator before it uses the connection
    for writes, because on PostgreSQL it holds a read transaction open.
    """
    sql, params = _row_query(sessions)
    segments = _check_segments(columns)
    with _read_transaction(), connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while batch := cursor.fetchmany(CHUNK_SIZE):
            yield [
                row[0]
                + (row[1] or ",,,")
                + "".join([cells[row[index]] for index, cells in segments])
                + LINE_END
                for row in batch
            ]


def _read_transaction():
    # Outside a transaction, Django declares PostgreSQL's server-side cursor
    # WITH HOLD, which runs the whole query and stores every row on the
    # server before the first fetch (about 4 s for the benchmark's million
    # sessions). A SQLite transaction would take the write lock instead,
    # because the product's connections begin transactions IMMEDIATE.
    if connection.vendor == "postgresql":
        return transaction.atomic()
    return contextlib.nullcontext()


def _check_segments(columns):
    """Return [(row index, cells)] for each run of same-group check columns.

    A query row is (head, decision, biometric checks, device checks), and
    ``cells`` maps a group's JSON text to the cells of the run's columns.
    """
    value_cells = _Cells(lambda value: "," + csv_cell(value))

    def formatter(names):
        def format(text):
            statuses = json.loads(text) if text is not None else _EMPTY
            return "".join([value_cells[statuses.get(name)] for name in names])

        return format

    segments = []
    for group, run in itertools.groupby(columns, key=lambda column: column[0]):
        names = [name for _, name, _ in run]
        index = 2 + export_lines.CHECK_GROUPS.index(group)
        segments.append((index, _Cells(formatter(names))))
    return segments


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
    """Return (sql, params) of the rows: (head, decision, biometric, device)."""
    where, params = "", []
    if sessions.query.where:
        subquery, params = sessions.values("session_time", "pk").query.sql_with_params()
        where = f"WHERE (e.session_time, e.session_id) IN ({subquery})"
    query = f"""
        SELECT
            e.head,
            e.decision,
            e.biometric_checks,
            e.device_checks
        FROM {export_lines.TABLE} e
        {where}
        ORDER BY e.session_time, e.session_id
    """
    return query, params

"""CSV export of stored sessions, shared by export_sessions and the web UI."""

import csv

from django.db.models import Subquery

from reviews.models import newest_session_decision
from roundtable_sync.checks import ordered_check_keys
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
# The fields a row reads: the raw payload is large and never exported.
ROW_FIELDS = [*SESSION_COLUMNS, "checks"]
CHUNK_SIZE = 2000
# A spreadsheet runs a cell starting with one of these as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value):
    """Return a CSV cell that a spreadsheet shows as text, never runs."""
    if value is None:
        return ""
    text = str(value)
    # A prefix behind leading whitespace or a newline counts too, because a
    # spreadsheet may trim the cell on import and then read " =1+1" as a formula.
    if text.startswith(FORMULA_PREFIXES) or text.lstrip().startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def check_columns(sessions):
    """Return [(group, name, header)] for checks present in ``sessions``.

    A header is the bare check name unless the name occurs in both groups
    or equals a base column, in which case it gets its group as a prefix.
    """
    present = set(
        SessionCheck.objects.filter(session__in=sessions.values("pk"))
        .values_list("group", "name")
        .distinct()
    )
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


def _collides(name, names):
    return names.count(name) > 1 or name in BASE_COLUMNS


def sessions_csv_rows(sessions):
    """Yield the header, then one neutralized row per session, oldest first.

    Rows are read in chunks, so memory stays flat however many sessions match.
    """
    columns = check_columns(sessions)
    yield BASE_COLUMNS + [neutralize(header) for _, _, header in columns]
    rows = (
        with_current_decision(sessions.only(*ROW_FIELDS))
        .order_by("session_time", "session_id")
        .iterator(chunk_size=CHUNK_SIZE)
    )
    for session in rows:
        yield _row(session, columns)


def with_current_decision(sessions):
    """Annotate each session with its newest decision's kind, analyst and time."""
    newest = newest_session_decision()
    return sessions.annotate(
        decision_kind=Subquery(newest.values("kind")[:1]),
        decision_by=Subquery(newest.values("decided_by_label")[:1]),
        decision_at=Subquery(newest.values("decided_at")[:1]),
    )


def write_sessions_csv(sessions, output):
    """Write one CSV row per session to the text stream ``output``.

    Returns the number of data rows written.
    """
    writer = csv.writer(output)
    rows = sessions_csv_rows(sessions)
    writer.writerow(next(rows))
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count


class _Line:
    """A file-like object whose write() returns the text, for csv.writer."""

    def write(self, text):
        return text


def stream_sessions_csv(sessions):
    """Yield the CSV of ``sessions`` line by line, for a streaming response."""
    writer = csv.writer(_Line())
    for row in sessions_csv_rows(sessions):
        yield writer.writerow(row)


def _row(session, columns):
    row = [
        session.user_id,
        session.session_id,
        _iso_time(session.session_time),
        session.session_time_source,
        session.risk_score,
        session.recommended_action,
        session.risk_explanation,
        ";".join(session.tags),
        session.decision_kind,
        session.decision_by,
        _iso_time(session.decision_at),
    ]
    for group, name, _ in columns:
        row.append(session.checks.get(group, {}).get(name))
    return [neutralize(value) for value in row]


def _iso_time(value):
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")

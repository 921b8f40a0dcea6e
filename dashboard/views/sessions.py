"""The sessions explorer: every stored session, filtered, sorted and paged.

Pages use keyset (cursor) pagination on (sort column, session_id), so a page
costs one range query and no COUNT(*), however many sessions match.
"""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.db.models import F, Q
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from dashboard.filters import SessionFilterForm
from roundtable_sync.bands import current_thresholds
from roundtable_sync.models import Session, WatchedUser
from roundtable_sync.search import can_prefilter

PAGE_SIZE = 50
# A free-text search on SQLite first looks for its page among this many
# sessions in page order, because SQLite cannot estimate how many sessions
# the FTS5 index matches and always reads every match first. At a million
# sessions a term in a quarter of them takes most of a second that way.
SEARCH_WINDOW = 2000

# Only the columns the table shows, because the raw payload is large.
TABLE_FIELDS = [
    "session_id",
    "user_id",
    "session_time",
    "session_time_source",
    "risk_score",
    "recommended_action",
    "tags",
]


@dataclass(frozen=True)
class SortColumn:
    key: str
    field: str
    label: str
    nullable: bool = False
    # The direction of a first click on the column header.
    descending_first: bool = False


SORT_COLUMNS = {
    column.key: column
    for column in [
        SortColumn("time", "session_time", "Session time", descending_first=True),
        SortColumn(
            "score", "risk_score", "Score", nullable=True, descending_first=True
        ),
        SortColumn("user", "user_id", "User ID"),
        SortColumn("session", "session_id", "Session ID"),
    ]
}
DEFAULT_SORT = "-time"
HEADER_ORDER = ["time", "user", "session", "score"]


class InvalidCursorError(ValueError):
    pass


@dataclass(frozen=True)
class Ordering:
    """A sort column and direction, with session_id breaking ties.

    A missing score sorts below every score in both directions, written out
    as NULLS FIRST/LAST because SQLite and PostgreSQL disagree by default.
    """

    column: SortColumn
    descending: bool

    @classmethod
    def parse(cls, value):
        """Return the Ordering for a ``sort`` parameter such as "-time", or None."""
        column = SORT_COLUMNS.get(value.removeprefix("-"))
        if column is None:
            return None
        return cls(column, value.startswith("-"))

    @property
    def param(self):
        return f"-{self.column.key}" if self.descending else self.column.key

    def reversed(self):
        return Ordering(self.column, not self.descending)

    def order_by(self):
        field = F(self.column.field)
        if self.column.nullable:
            first = (
                field.desc(nulls_last=True)
                if self.descending
                else field.asc(nulls_first=True)
            )
        else:
            first = field.desc() if self.descending else field.asc()
        if self.column.field == "session_id":
            return [first]
        tiebreak = F("session_id").desc() if self.descending else F("session_id").asc()
        return [first, tiebreak]

    def after(self, value, session_id):
        """Return a filter for the rows that follow (value, session_id)."""
        later = "lt" if self.descending else "gt"
        field = self.column.field
        if field == "session_id":
            return (
                Q(session_id__gt=session_id)
                if later == "gt"
                else Q(session_id__lt=session_id)
            )
        tie = Q(**{field: value, f"session_id__{later}": session_id})
        if value is None:
            # Missing scores come first ascending and last descending.
            tie = Q(**{f"{field}__isnull": True, f"session_id__{later}": session_id})
            if self.descending:
                return tie
            return tie | Q(**{f"{field}__isnull": False})
        following = Q(**{f"{field}__{later}": value}) | tie
        if self.column.nullable and self.descending:
            return following | Q(**{f"{field}__isnull": True})
        # The same rows, but with a plain range on the column that lets
        # SQLite seek in the index instead of scanning it from the start.
        return Q(**{f"{field}__{later}e": value}) & following

    def encode_cursor(self, session):
        value = getattr(session, self.column.field)
        if isinstance(value, datetime):
            value = value.isoformat()
        text = json.dumps([value, session.session_id], separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    def decode_cursor(self, cursor):
        """Return (value, session_id) from ``cursor`` or raise InvalidCursorError."""
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            value, session_id = json.loads(base64.urlsafe_b64decode(padded))
        except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
            raise InvalidCursorError(cursor) from None
        if not isinstance(session_id, str):
            raise InvalidCursorError(cursor)
        return self._decode_value(value, cursor), session_id

    def _decode_value(self, value, cursor):
        key = self.column.key
        if key == "time" and isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise InvalidCursorError(cursor) from None
            if parsed.tzinfo is not None:
                return parsed
        elif key == "score" and (value is None or type(value) is int):
            return value
        elif key in ("user", "session") and isinstance(value, str):
            return value
        raise InvalidCursorError(cursor)


@dataclass
class SortHeader:
    label: str
    url: str
    # The aria-sort value: "ascending", "descending" or "" when not sorted.
    state: str


@dataclass
class SessionTable:
    """One page of sessions with its sort headers and page links."""

    rows: list
    headers: list
    first_url: str | None
    previous_url: str | None
    next_url: str | None
    last_url: str | None
    errors: list
    show_user: bool
    # The first page's link, set only when a valid cursor selects no rows.
    restart_url: str | None = None


def session_table(request, form, *, show_user=True):
    """Return one page of the sessions that ``form`` selects, in the request's order.

    Runs two queries: the page and the watched users among its user IDs. A
    free-text search on SQLite may run up to two more (see ``_first_rows``).
    """
    errors = []
    sort_param = request.GET.get("sort") or DEFAULT_SORT
    ordering = Ordering.parse(sort_param)
    if ordering is None:
        errors.append(
            f'Sort "{sort_param}" is invalid: choose one of '
            f"{', '.join(SORT_COLUMNS)}, optionally with a leading "
            '"-" for descending order. Showing newest first.'
        )
        ordering = Ordering.parse(DEFAULT_SORT)

    rows, has_previous, has_next = _page(request.GET, form, ordering, errors)
    _annotate_rows(rows)

    def link(**cursor):
        return "?" + form.querystring(sort=ordering.param, **cursor)

    if not rows:
        # A cursor past either end (say a bookmarked "Next" link after a
        # purge) selects no rows to build links from: offer the first page.
        past_end = has_previous or has_next
        return SessionTable(
            rows=rows,
            headers=_sort_headers(form, ordering, show_user),
            first_url=None,
            previous_url=None,
            next_url=None,
            last_url=None,
            errors=errors,
            show_user=show_user,
            restart_url=link() if past_end else None,
        )

    return SessionTable(
        rows=rows,
        headers=_sort_headers(form, ordering, show_user),
        first_url=link() if has_previous else None,
        previous_url=link(before=ordering.encode_cursor(rows[0]))
        if has_previous
        else None,
        next_url=link(after=ordering.encode_cursor(rows[-1])) if has_next else None,
        last_url=link(last="1") if has_next else None,
        errors=errors,
        show_user=show_user,
    )


def _page(params, form, ordering, errors):
    """Return (rows, has_previous, has_next) for the request's cursor."""
    backwards = "before" in params or "last" in params
    query_ordering = ordering.reversed() if backwards else ordering
    cursor = params.get("before") if backwards else params.get("after")
    after = Q()
    if cursor:
        try:
            after = query_ordering.after(*ordering.decode_cursor(cursor))
        except InvalidCursorError:
            errors.append(f'Page cursor "{cursor}" is invalid. Showing the first page.')
            return _page({}, form, ordering, errors)

    rows = _first_rows(form, query_ordering, after, PAGE_SIZE + 1)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    if backwards:
        rows.reverse()
        return rows, more, bool(cursor)
    return rows, bool(cursor), more


def _first_rows(form, ordering, after, count):
    """Return the first ``count`` sessions that ``form`` selects after a cursor."""
    sessions = Session.objects.only(*TABLE_FIELDS)
    order_by = ordering.order_by()
    text = form.search_text
    if text and connection.vendor == "sqlite" and can_prefilter(text, "sqlite"):
        rows = _first_rows_in_window(form, sessions, order_by, after, count)
        if rows is not None:
            return rows
    return list(form.filter(sessions).filter(after).order_by(*order_by)[:count])


def _first_rows_in_window(form, sessions, order_by, after, count):
    """Return the page from the next SEARCH_WINDOW sessions, or None if unsure.

    The window contains the sessions after the cursor in page order, narrowed
    only by the user, which an index serves for every sort. Every other
    filter, tested row by row, applies to the window's rows alone. If the
    page fills up there, or the window contains every session left, later
    sessions cannot belong on the page.
    """
    window = sessions.filter(after)
    if form.user_id:
        window = window.filter(user_id=form.user_id)
    window = window.order_by(*order_by).values("pk")
    matching = form.filter(sessions, search_index=False).filter(
        pk__in=window[:SEARCH_WINDOW]
    )
    rows = list(matching.order_by(*order_by)[:count])
    if len(rows) == count or not window[SEARCH_WINDOW - 1 : SEARCH_WINDOW].exists():
        return rows
    return None


def _annotate_rows(rows):
    """Set ``watched_pk``, ``is_flagged`` and the links on each row, in one query.

    ``user_url`` is the user's page for a watched user, else the explorer
    filtered by the user ID. ``detail_url`` is the session page. The URLs
    are reversed once per page or per watched user, rather than with two
    ``{% url %}`` tags per row, to keep the table cheap to render.
    """
    user_ids = {row.user_id for row in rows}
    watched = dict(
        WatchedUser.objects.filter(user_id__in=user_ids).values_list("user_id", "pk")
    )
    user_pages = {
        user_id: reverse("user_detail", args=[pk]) for user_id, pk in watched.items()
    }
    session_list_url = reverse("session_list")
    session_detail_url = reverse("session_detail")
    thresholds = current_thresholds()
    for row in rows:
        row.watched_pk = watched.get(row.user_id)
        row.is_flagged = thresholds.is_flagged(row.risk_score, row.recommended_action)
        # quote(safe="") encodes as the template filter urlencode:'' does.
        row.user_url = user_pages.get(row.user_id) or (
            f"{session_list_url}?user={quote(row.user_id, safe='')}"
        )
        row.detail_url = f"{session_detail_url}?id={quote(row.session_id, safe='')}"


def _sort_headers(form, ordering, show_user):
    headers = []
    for key in HEADER_ORDER:
        if key == "user" and not show_user:
            continue
        column = SORT_COLUMNS[key]
        if column is ordering.column:
            state = "descending" if ordering.descending else "ascending"
            target = ordering.reversed()
        else:
            state = ""
            target = Ordering(column, column.descending_first)
        url = "?" + form.querystring(sort=target.param)
        headers.append(SortHeader(column.label, url, state))
    return headers


@login_required
@require_GET
def session_list(request):
    form = SessionFilterForm(request.GET)
    context = {
        "form": form,
        "table": session_table(request, form),
    }
    return render(request, "dashboard/session_list.html", context)

"""Page render times against the raw SQL each page issues.

Each page is fetched through Django's test client, signed in as an analyst.
One extra request captures the SQL the page runs. The baseline re-runs those
statements, as the logged text with parameters inlined, on the driver's own
cursor and fetches every row. The ratio is thus the cost of everything that
is not the database.
"""

import statistics
import time
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from bench import dataset
from bench.results import row
from bench.urls import EMPTY_PAGE
from dashboard.views.sessions import DEFAULT_SORT, Ordering
from roundtable_sync import tallies, user_risk
from roundtable_sync.models import (
    CheckTally,
    Session,
    SessionTally,
    UserRiskChange,
    WatchedUser,
)

MAX_RATIO = 3.0
MAX_MEDIAN_MS = 300


def measure(runs, size):
    # The worker folds the overview's tallies and refreshes its per-user
    # summaries every minute. The store figure, run just before, leaves the
    # rows of its 100,000 sessions unfolded, and on PostgreSQL the fold
    # leaves millions of dead rows that autovacuum would clear in the
    # background.
    tallies.compact()
    user_risk.refresh()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for model in (SessionTally, CheckTally, UserRiskChange):
                cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")
    client = Client()
    client.force_login(get_user_model().objects.get(username=dataset.ANALYST))
    rows = [_measure_page(client, "Empty page (floor)", EMPTY_PAGE, runs, floor=True)]
    for name, url in page_urls(client):
        rows.append(_measure_page(client, name, url, runs))
    return rows


def page_urls(client):
    """Return [(name, URL)] of the pages measured."""
    urls = [
        (f"Overview, range {r}", f"/?range={r}") for r in ("24h", "7d", "30d", "all")
    ]
    explorer = reverse("session_list")
    urls += [
        ("Explorer, first page", explorer),
        ("Explorer, middle page", explorer + "?" + _middle_cursor()),
        ("Explorer, last page", explorer + "?last=1"),
        (
            "Explorer, filtered (flagged, score >= 70)",
            explorer + "?flagged=on&score_min=70",
        ),
        (
            "Explorer, filtered by check (bot detected)",
            explorer + "?check_name=bot&check_status=Detected",
        ),
        ("Explorer, free-text search", explorer + "?q=checkout"),
    ]
    busiest = (
        Session.objects.values("user_id")
        .order_by()
        .annotate(n=Count("session_id"))
        .order_by("-n")
        .values_list("user_id", flat=True)
        .first()
    )
    watched = WatchedUser.objects.get(user_id=busiest)
    urls.append(
        ("User page (most sessions)", reverse("user_detail", args=[watched.pk]))
    )
    newest = Session.objects.order_by("-session_time").values_list(
        "session_id", flat=True
    )[0]
    urls.append(
        ("Session page", reverse("session_detail") + "?" + urlencode({"id": newest}))
    )
    return urls


def _middle_cursor():
    """Return the query string of the explorer page halfway through all sessions."""
    middle = Session.objects.count() // 2
    session = Session.objects.order_by("-session_time", "-session_id").only(
        "session_id", "session_time"
    )[middle]
    return urlencode({"after": Ordering.parse(DEFAULT_SORT).encode_cursor(session)})


def _measure_page(client, name, url, runs, floor=False):
    _get(client, url)  # Warm caches and the query plan.
    with CaptureQueriesContext(connection) as captured:
        _get(client, url)
    # Copied now: the next request clears the connection's query log.
    statements = [query["sql"] for query in captured.captured_queries]
    page_ms, sql_ms = [], []
    for _ in range(runs):
        started = time.perf_counter()
        _get(client, url)
        page_ms.append((time.perf_counter() - started) * 1000)
        sql_ms.append(_run_raw(statements) * 1000)
    ratio = statistics.median(page_ms) / statistics.median(sql_ms)
    median = statistics.median(page_ms)
    return row(
        f"{name} ({len(statements)} queries; baseline: its SQL)",
        "ms",
        page_ms,
        baseline=sql_ms,
        ratio=ratio,
        # The empty page has no target: it shows the framework's share.
        target="context" if floor else f"<= {MAX_RATIO:g} x SQL, < {MAX_MEDIAN_MS} ms",
        met=None if floor else ratio <= MAX_RATIO and median < MAX_MEDIAN_MS,
    )


def _get(client, url):
    response = client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"{url} returned HTTP {response.status_code}.")
    return response


def _run_raw(statements):
    """Re-run the captured statements on the driver's cursor; return seconds.

    CaptureQueriesContext records the SQL as the backend formatted it for the
    log, with parameters inlined, so each statement runs as that text.
    """
    cursor = connection.connection.cursor()
    started = time.perf_counter()
    for sql in statements:
        if sql.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO")):
            continue
        cursor.execute(sql)
        if cursor.description is not None:
            cursor.fetchall()
    return time.perf_counter() - started

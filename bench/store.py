"""Store and re-poll: the product's store path against a raw bulk upsert.

The input is users x 100 sessions that are already fetched and parsed, as a
poll hands them to the store. Each run deletes them, upserts them with the
driver alone (the baseline), deletes them again, stores them through
``store_sessions`` one user per transaction as a poll does, then stores the
same unchanged sessions again (the re-poll).
"""

import json
import logging
import statistics
from datetime import datetime, timedelta

from django.db import connection, transaction

from bench import dataset, payloads
from bench.results import row, time_runs
from roundtable_sync.models import ScoreChange, Session, SessionCheck, SessionEvent
from roundtable_sync.parsing import parse_session_list
from roundtable_sync.store import (
    MAX_CHECK_TEXT,
    raw_digest,
    store_sessions,
)

logger = logging.getLogger(__name__)

SESSIONS_PER_USER = 100
USER_PREFIX = "store-user-"


def measure(runs, size):
    size = dataset.SIZES[size]
    anchor = _anchor()
    listings = fetched_sessions(size.store_users, anchor)
    count = sum(len(listing.sessions) for _, listing in listings)
    now = anchor + timedelta(minutes=1)
    repoll_now = now + timedelta(minutes=5)
    baseline_rows = driver_rows(listings, now)

    timings = {"baseline": [], "store": [], "repoll": []}
    writes = []
    for _ in range(runs):
        _delete_stored(listings)
        timings["baseline"] += time_runs(1, lambda: raw_upsert(*baseline_rows))
        _delete_stored(listings)
        timings["store"] += time_runs(1, lambda: product_store(listings, now))
        before = _write_marks()
        timings["repoll"] += time_runs(1, lambda: product_store(listings, repoll_now))
        writes.append(_writes_since(before, repoll_now))
    _delete_stored(listings)

    # The medians that the table shows, also for an even number of runs.
    store_seconds = statistics.median(timings["store"])
    store_ratio = statistics.median(timings["baseline"]) / store_seconds
    repoll_ratio = statistics.median(timings["repoll"]) / store_seconds
    no_writes = not any(writes)
    label = f"{count:,} sessions"
    return [
        row(
            f"Store {label} (baseline: driver upsert)",
            "s",
            timings["store"],
            baseline=timings["baseline"],
            ratio=store_ratio,
            target="speed >= 0.25 x driver",
            met=store_ratio >= 0.25,
        ),
        row(
            f"Re-poll {label} unchanged (baseline: first store)",
            "s",
            timings["repoll"],
            baseline=timings["store"],
            ratio=repoll_ratio,
            target="<= 0.20 x store, no rows written"
            + ("" if no_writes else f" (WROTE {writes})"),
            met=repoll_ratio <= 0.20 and no_writes,
        ),
    ]


def _anchor():
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT value FROM {dataset.META_TABLE} WHERE name = 'anchor'")
        return datetime.fromisoformat(cursor.fetchone()[0])


def fetched_sessions(user_count, anchor):
    """Return [(user_id, SessionList)] as the client returns them after a fetch."""
    anchor_ms = int(anchor.timestamp() * 1000)
    listings = []
    for index in range(user_count):
        user_id = f"{USER_PREFIX}{index:04d}"
        rng = payloads.seeded(dataset.SEED, "store", user_id)
        user = payloads.draw_user(rng, user_id)
        starts = payloads.start_times(rng, SESSIONS_PER_USER, anchor_ms, 30)
        body = {
            "user_id": user_id,
            # The API lists the newest first.
            "sessions": [
                payloads.draw_session(rng, user, start)[0] for start in reversed(starts)
            ],
        }
        listings.append((user_id, parse_session_list(body, "user_id")))
    return listings


def product_store(listings, now):
    """Store each user's sessions in its own transaction, as a poll does."""
    for user_id, listing in listings:
        with transaction.atomic():
            store_sessions(user_id, listing.sessions, now)


def driver_rows(listings, now):
    """Return the session, check and event rows that a first store writes.

    They are the same rows and columns as the product writes, with values
    already converted to driver parameters, so the baseline times only the
    database work.
    """
    adapt = dataset._datetime_adapter()
    sessions, checks, events = [], [], []
    for user_id, listing in listings:
        for s in listing.sessions:
            logged = s.earliest_log_time
            check_map = {"biometric": s.biometric_checks, "device": s.device_checks}
            sessions.append(
                (
                    s.session_id,
                    user_id,
                    json.dumps(s.tags),
                    s.risk_score,
                    s.risk_explanation,
                    s.recommended_action,
                    json.dumps(check_map),
                    json.dumps(s.raw),
                    raw_digest(s.raw),
                    adapt(now),
                    adapt(now),
                    adapt(logged or now),
                    "user_logs" if logged else "first_seen",
                    False,
                    not s.user_logs,
                    None,
                    0,
                )
            )
            for group, statuses in check_map.items():
                for name, status in statuses.items():
                    if max(len(name), len(status)) <= MAX_CHECK_TEXT:
                        checks.append((s.session_id, group, name, status))
            for position, event in enumerate(s.user_logs or ()):
                events.append(
                    (
                        s.session_id,
                        position,
                        event.action,
                        event.user_time,
                        event.unix_timestamp,
                        adapt(event.timestamp) if event.timestamp else None,
                    )
                )
    return sessions, checks, events


SESSION_UPSERT = """
INSERT INTO roundtable_sync_session (
    session_id, user_id, tags, risk_score, risk_explanation,
    recommended_action, checks, raw, raw_digest, first_seen_at, changed_at,
    session_time, session_time_source, has_unindexed_checks, needs_events,
    events_fetched_at, events_attempts
) VALUES ({marks})
ON CONFLICT (session_id) DO UPDATE SET
    user_id = excluded.user_id, tags = excluded.tags,
    risk_score = excluded.risk_score,
    risk_explanation = excluded.risk_explanation,
    recommended_action = excluded.recommended_action,
    checks = excluded.checks, raw = excluded.raw,
    raw_digest = excluded.raw_digest, changed_at = excluded.changed_at,
    session_time = excluded.session_time,
    session_time_source = excluded.session_time_source,
    has_unindexed_checks = excluded.has_unindexed_checks,
    needs_events = excluded.needs_events
"""
CHECK_INSERT = """
INSERT INTO roundtable_sync_sessioncheck (session_id, "group", name, status)
VALUES ({marks})
"""
EVENT_INSERT = """
INSERT INTO roundtable_sync_sessionevent (
    session_id, position, action, user_time, unix_timestamp, timestamp
) VALUES ({marks})
"""


def raw_upsert(sessions, checks, events):
    """Baseline: upsert the rows with the driver's executemany, one transaction."""
    raw = connection.connection
    mark = "%s" if connection.vendor == "postgresql" else "?"
    with transaction.atomic():
        cursor = raw.cursor()
        cursor.executemany(_sql(SESSION_UPSERT, mark, 17), sessions)
        cursor.executemany(_sql(CHECK_INSERT, mark, 4), checks)
        cursor.executemany(_sql(EVENT_INSERT, mark, 6), events)


def _sql(template, mark, count):
    return template.format(marks=", ".join([mark] * count))


def _delete_stored(listings):
    user_ids = [user_id for user_id, _ in listings]
    stored = Session.objects.filter(user_id__in=user_ids).values("pk")
    with transaction.atomic():
        for model in (SessionCheck, SessionEvent, ScoreChange):
            model.objects.filter(session_id__in=stored)._raw_delete(connection.alias)
        Session.objects.filter(user_id__in=user_ids)._raw_delete(connection.alias)


def _write_marks():
    """Return the highest check and event IDs, which any rewrite raises."""
    return (
        SessionCheck.objects.order_by("-pk").values_list("pk", flat=True).first(),
        SessionEvent.objects.order_by("-pk").values_list("pk", flat=True).first(),
    )


def _writes_since(marks, now):
    """Return how many session, check and event rows were written since marks."""
    check_mark, event_mark = marks
    return (
        Session.objects.filter(changed_at=now).count()
        + SessionCheck.objects.filter(pk__gt=check_mark or 0).count()
        + SessionEvent.objects.filter(pk__gt=event_mark or 0).count()
    )

"""Build the benchmark data set from a fixed seed with bulk inserts.

Rows go straight to the product's tables through the driver (executemany on
SQLite, COPY on PostgreSQL) with the secondary indexes dropped and rebuilt
afterwards, which keeps a full build to minutes. The rows are what the store
would have written for the same payloads: the same JSON text, digest, session
time and check rows.
"""

import json
import logging
import multiprocessing
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection, transaction

from bench import payloads
from reviews.models import Decision, DecisionKind
from roundtable_sync import tallies, user_risk
from roundtable_sync.bands import current_thresholds
from roundtable_sync.models import (
    CheckDayTally,
    CheckTally,
    ScoreChange,
    Session,
    SessionCheck,
    SessionDayTally,
    SessionEvent,
    SessionTally,
    WatchedUser,
)
from roundtable_sync.parsing import EPOCH
from roundtable_sync.store import raw_digest

logger = logging.getLogger(__name__)

SEED = 7_2026
# Bump when the generator changes, so an old data set is rebuilt.
FORMAT_VERSION = 1
DAYS = 180
ANALYST = "bench-analyst"
ANALYST_PASSWORD = "bench-password-not-secret"
# Users whose sessions are written per insert batch.
USERS_PER_BATCH = 100
META_TABLE = "bench_meta"


@dataclass(frozen=True)
class Size:
    name: str
    users: int
    sessions: int
    # Users x 100 sessions for the store and re-poll figures.
    store_users: int


SIZES = {
    "small": Size("small", users=200, sessions=10_000, store_users=50),
    "full": Size("full", users=10_000, sessions=1_000_000, store_users=1_000),
}


def ensure_built(size, rebuild=False):
    """Build the data set unless the database already contains this one.

    Returns the metadata dict: seed, size, anchor (the end of the 180 days,
    as ISO 8601) and the build time in seconds.
    """
    call_command("migrate", verbosity=0, interactive=False)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {META_TABLE} "
            "(name VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL)"
        )
        cursor.execute(f"SELECT name, value FROM {META_TABLE}")
        meta = dict(cursor.fetchall())
    wanted = {"seed": str(SEED), "size": size.name, "version": str(FORMAT_VERSION)}
    if not rebuild and all(meta.get(k) == v for k, v in wanted.items()):
        return meta
    if Session.objects.exists() or meta:
        raise SystemExit(
            f"The bench database contains another data set ({meta or 'unknown'}). "
            "Run with --rebuild to drop it and build this one."
        )
    return _build(size, wanted)


def _build(size, meta):
    started = time.perf_counter()
    # Whole hours, so two builds of one size differ only by a shift in time.
    anchor = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    logger.warning(
        "Building the %s data set: %d users, %d sessions",
        size.name,
        size.users,
        size.sessions,
    )
    _create_analyst()
    rng = payloads.seeded(SEED, "users")
    users = [
        payloads.draw_user(rng, f"user-{index:05d}") for index in range(size.users)
    ]
    counts = payloads.session_counts(rng, users, size.sessions)
    batches = [
        (
            users[start : start + USERS_PER_BATCH],
            counts[start : start + USERS_PER_BATCH],
        )
        for start in range(0, len(users), USERS_PER_BATCH)
    ]
    # Forked workers must not inherit an open connection: one closing it at
    # exit would end the parent's session on PostgreSQL.
    connection.close()
    with multiprocessing.get_context("fork").Pool(os.cpu_count()) as pool:
        tables = [m._meta.db_table for m in _BULK_MODELS]
        indexes = _drop_secondary_indexes(tables)
        _set_sqlite_journal("OFF")
        generated = pool.imap(_generate, [(batch, anchor) for batch in batches])
        for number, rows in enumerate(generated, start=1):
            with transaction.atomic():
                for model in _BULK_MODELS:
                    bulk_insert(model, rows[model])
            done = min(number * USERS_PER_BATCH, len(users))
            if done % 1000 == 0 or done == len(users):
                logger.warning("  %d of %d users written", done, len(users))
    _create_indexes(indexes)
    _recount_tallies()
    # As the worker's first refresh would.
    user_risk.count_all(current_thresholds().review)
    _set_sqlite_journal("WAL")
    _analyze()
    meta.update(
        anchor=anchor.isoformat(),
        build_seconds=f"{time.perf_counter() - started:.0f}",
    )
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {META_TABLE} (name, value) VALUES (%s, %s)",
            list(meta.items()),
        )
    logger.warning("Built in %s s", meta["build_seconds"])
    return meta


def _recount_tallies():
    """Replace the rows the tally triggers appended with one row per key.

    One grouped count of the stored rows is far quicker than folding the
    fifteen million rows the triggers appended during the bulk insert.
    """
    with connection.cursor() as cursor:
        for model in (SessionTally, CheckTally, SessionDayTally, CheckDayTally):
            cursor.execute(f"DELETE FROM {model._meta.db_table}")
    tallies.count_existing()
    tallies.count_days()


def _set_sqlite_journal(mode):
    """Switch SQLite's journal off for the build, and back to WAL after it.

    A crash mid-build leaves a corrupt file, which --rebuild replaces; without
    the journal a full build writes about half as much.
    """
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA journal_mode={mode}")
        cursor.execute("PRAGMA synchronous=" + ("OFF" if mode == "OFF" else "NORMAL"))
        cursor.execute("PRAGMA cache_size=-1000000")


def _create_analyst():
    user = get_user_model().objects.create_user(ANALYST, password=ANALYST_PASSWORD)
    user.groups.add(Group.objects.get(name="analysts"))


_BULK_MODELS = [WatchedUser, Session, SessionCheck, SessionEvent, ScoreChange, Decision]


class _Rows:
    """Rows for each bulk-loaded model, as dicts of column values."""

    def __init__(self):
        self.by_model = {model: [] for model in _BULK_MODELS}

    def add(self, model, **values):
        self.by_model[model].append(values)


def _generate(job):
    """Return the rows of one batch of users, by model (runs in a worker)."""
    (users, counts), anchor = job
    rows = _Rows()
    anchor_ms = int(anchor.timestamp() * 1000)
    for user, count in zip(users, counts, strict=True):
        rng = payloads.seeded(SEED, "sessions", user.user_id)
        _add_watched_user(rows, user, anchor, rng)
        for start_ms in payloads.start_times(rng, count, anchor_ms, DAYS):
            _add_session(rows, rng, user, start_ms, anchor)
    return rows.by_model


def _add_watched_user(rows, user, anchor, rng):
    rows.add(
        WatchedUser,
        user_id=user.user_id,
        note="",
        added_by_id=None,
        added_at=anchor - timedelta(days=DAYS),
        is_active=True,
        next_poll_at=anchor + timedelta(seconds=rng.randrange(300)),
        claim_token=None,
        claim_holder="",
        last_polled_at=anchor,
        last_synced_at=anchor,
        last_poll_outcome="synced",
        last_poll_error="",
        coverage_gap_at=None,
        # No response digest: these rows were not stored from a response,
        # so the first real poll parses and compares in full.
        response_digest="",
        response_sessions=0,
        response_warnings="",
    )


def _add_session(rows, rng, user, start_ms, anchor):
    raw, events = payloads.draw_session(rng, user, start_ms)
    sid = raw["session_id"]
    started = _from_ms(start_ms)
    first_seen = min(anchor, started + timedelta(seconds=rng.uniform(30, 600)))
    with_logs = "user_logs" in raw
    checks = {"biometric": raw["biometric_checks"], "device": raw["device_checks"]}
    rows.add(
        Session,
        session_id=sid,
        user_id=user.user_id,
        tags=json.dumps(raw["tags"]),
        risk_score=raw["risk_score"],
        risk_explanation=raw["risk_explanation"],
        recommended_action=raw["recommended_action"],
        checks=json.dumps(checks),
        raw=json.dumps(raw),
        raw_digest=raw_digest(raw),
        first_seen_at=first_seen,
        changed_at=first_seen,
        session_time=started,
        # Without user_logs the events endpoint dated the session.
        session_time_source="user_logs" if with_logs else "events",
        has_unindexed_checks=False,
        needs_events=False,
        events_fetched_at=None if with_logs else first_seen,
        events_attempts=0,
    )
    for group, statuses in checks.items():
        for name, status in statuses.items():
            rows.add(
                SessionCheck, session_id=sid, group=group, name=name, status=status
            )
    for position, (at, action) in enumerate(events):
        rows.add(
            SessionEvent,
            session_id=sid,
            position=position,
            action=action,
            user_time=raw["user_logs"][position]["user_time"] if with_logs else None,
            unix_timestamp=at,
            timestamp=_from_ms(at),
        )
    _add_review_history(rows, rng, raw, first_seen)


def _add_review_history(rows, rng, raw, first_seen):
    score = raw["risk_score"]
    sid = raw["session_id"]
    if rng.random() < 0.1:
        # Polled while live: the score moved before it settled.
        old = max(0, min(100, score + rng.randint(-25, 25)))
        rows.add(
            ScoreChange,
            session_id=sid,
            observed_at=first_seen + timedelta(minutes=5),
            old_score=old,
            new_score=score,
            old_action=raw["recommended_action"],
            new_action=raw["recommended_action"],
        )
    if score >= 50 and rng.random() < 0.05:
        rows.add(
            Decision,
            session_id=sid,
            user_id="",
            kind=rng.choice(list(DecisionKind)).value,
            note="",
            decided_by_id=None,
            decided_by_label=ANALYST,
            decided_at=first_seen + timedelta(hours=rng.uniform(1, 48)),
        )


def _from_ms(millis):
    return EPOCH + timedelta(milliseconds=millis)


def bulk_insert(model, rows):
    """Insert dict rows into ``model``'s table with the driver alone.

    Every concrete column except an auto-increment key must have a value,
    so a model change that adds a column fails here instead of loading
    defaults the product would not write.
    """
    if not rows:
        return
    fields = [
        f
        for f in model._meta.concrete_fields
        if not f.primary_key or not f.auto_created
    ]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    adapt = _datetime_adapter()
    datetime_columns = {
        f.attname for f in fields if f.get_internal_type() == "DateTimeField"
    }
    values = (
        tuple(
            adapt(row[f.attname])
            if f.attname in datetime_columns and row[f.attname] is not None
            else row[f.attname]
            for f in fields
        )
        for row in rows
    )
    cursor = connection.connection.cursor()
    if connection.vendor == "postgresql":
        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for value in values:
                copy.write_row(value)
    else:
        marks = ", ".join("?" for _ in fields)
        cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", values)


def _datetime_adapter():
    """Return the function that turns an aware UTC datetime into a parameter.

    Django stores SQLite datetimes as naive UTC text, exactly str() of the
    naive value; psycopg takes the aware datetime itself.
    """
    if connection.vendor == "postgresql":
        return lambda value: value
    return lambda value: str(value.replace(tzinfo=None))


def _drop_secondary_indexes(tables):
    """Drop the non-constraint indexes of ``tables``; return their definitions."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s) "
                "AND indexname NOT IN (SELECT conname FROM pg_constraint)",
                [tables],
            )
        else:
            marks = ", ".join("%s" for _ in tables)
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                f"AND sql IS NOT NULL AND tbl_name IN ({marks})",
                tables,
            )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f"DROP INDEX {connection.ops.quote_name(name)}")
    return [definition for _, definition in indexes]


def _create_indexes(definitions):
    logger.warning("Creating %d indexes", len(definitions))
    with connection.cursor() as cursor:
        for definition in definitions:
            cursor.execute(definition)


def _analyze():
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("VACUUM ANALYZE")
        else:
            cursor.execute("ANALYZE")

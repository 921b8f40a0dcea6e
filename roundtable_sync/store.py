"""Turn parsed API sessions into stored rows, writing only what changed."""

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import transaction

from roundtable_sync import bulk
from roundtable_sync.models import (
    CheckGroup,
    ForgottenSession,
    ScoreChange,
    Session,
    SessionCheck,
    SessionEvent,
    SessionTimeSource,
    WatchedUser,
)

logger = logging.getLogger(__name__)

# The API returns at most this many sessions per user and has no paging.
API_PAGE_LIMIT = 100
# Keeps each IN (...) list well under SQLite's bound-parameter limit.
BATCH_SIZE = 500
# Length of SessionCheck's indexed name and status columns.
MAX_CHECK_TEXT = 255

# Columns a store writes. An upsert of a changed session overwrites only
# UPSERT_FIELDS: first_seen_at and the events bookkeeping belong to this
# dashboard, not to the API's payload.
INSERT_FIELDS = ["session_id", "first_seen_at", "events_fetched_at", "events_attempts"]
UPSERT_FIELDS = [
    "user_id",
    "tags",
    "risk_score",
    "risk_explanation",
    "recommended_action",
    "checks",
    "has_unindexed_checks",
    "raw",
    "raw_digest",
    "changed_at",
    "session_time",
    "session_time_source",
    "needs_events",
]
CHECK_FIELDS = ["session_id", "group", "name", "status"]
EVENT_FIELDS = [
    "session_id",
    "position",
    "action",
    "user_time",
    "unix_timestamp",
    "timestamp",
]


class _Stored(NamedTuple):
    """The columns of a stored session that a store compares or keeps."""

    session_id: str
    raw_digest: str
    risk_score: int | None
    recommended_action: str | None
    first_seen_at: object
    session_time: object
    session_time_source: str


@dataclass
class StoreResult:
    received: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)
    # Sessions not stored because retention or erasure removed them on
    # purpose, or because they are older than the retention period.
    forgotten: int = 0
    new_session_ids: list[str] = field(default_factory=list)
    # Unsaved-then-saved ScoreChange rows of this store, for alert rules.
    score_changes: list = field(default_factory=list)


def raw_digest(raw):
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def store_sessions(user_id, sessions, now):
    """Insert new sessions and update changed ones of one Roundtable user.

    Sessions whose raw JSON is unchanged are not written at all. A change of
    score or recommended action adds a ScoreChange row.
    """
    result = StoreResult(received=len(sessions))
    storable = []
    for session in sessions:
        if len(session.session_id) > 255:
            result.skipped.append(
                f"Session ID {session.session_id[:40]!r}… is longer than 255 "
                "characters and was not stored."
            )
            logger.warning("%s: skipped a session ID over 255 characters", user_id)
            continue
        storable.append(session)

    existing = _load_existing([s.session_id for s in storable])
    storable = _drop_forgotten(storable, existing, now, result)
    rows, changes = [], []
    for session in storable:
        digest = raw_digest(session.raw)
        old = existing.get(session.session_id)
        if old is not None and old.raw_digest == digest:
            result.unchanged += 1
            continue
        rows.append(_build_row(user_id, session, digest, old, now))
        if old is None:
            result.new += 1
            result.new_session_ids.append(session.session_id)
        else:
            result.changed += 1
            change = _score_change(old, session, now)
            if change is not None:
                changes.append(change)

    if rows:
        with transaction.atomic():
            # A tag poll or report lookup may store a different version from
            # the user's own last response, so that response must be stored
            # again. Done first because a poll and erasure lock the watched
            # user before its sessions, and the opposite order can deadlock.
            forget_response_digests([user_id])
            _write(rows, changes, {s.session_id: s for s in storable}, existing)
    result.score_changes = changes
    return result


def forget_response_digests(user_ids):
    """Make the next poll of these users parse and store its response in full.

    Called wherever a user's stored sessions stop matching the last response
    its poll stored (WatchedUser.response_digest).
    """
    user_ids = list(user_ids)
    for start in range(0, len(user_ids), BATCH_SIZE):
        WatchedUser.objects.filter(
            user_id__in=user_ids[start : start + BATCH_SIZE]
        ).exclude(response_digest="").update(response_digest="")


def _drop_forgotten(sessions, existing, now, result):
    """Drop new sessions that retention or erasure removed, or would remove."""
    new_ids = [s.session_id for s in sessions if s.session_id not in existing]
    forgotten = set()
    for start in range(0, len(new_ids), BATCH_SIZE):
        forgotten.update(
            ForgottenSession.objects.filter(
                session_id__in=new_ids[start : start + BATCH_SIZE]
            ).values_list("session_id", flat=True)
        )
    cutoff = retention_cutoff(now)
    kept = []
    for session in sessions:
        logged = session.earliest_log_time
        expired = (
            cutoff is not None
            and session.session_id not in existing
            and logged is not None
            and logged < cutoff
        )
        if session.session_id in forgotten or expired:
            result.forgotten += 1
        else:
            kept.append(session)
    return kept


def retention_cutoff(now):
    """Return the time before which sessions are not kept, or None."""
    days = settings.ROUNDTABLE_RETENTION_DAYS
    return now - timedelta(days=days) if days else None


def forget_sessions(session_ids, reason, now):
    """Record deleted sessions so that later polls do not store them again."""
    ForgottenSession.objects.bulk_create(
        [
            ForgottenSession(session_id=sid, forgotten_at=now, reason=reason)
            for sid in session_ids
        ],
        batch_size=BATCH_SIZE,
        ignore_conflicts=True,
    )


def _load_existing(session_ids):
    # Tuples, not model instances: a re-poll loads every session it receives.
    existing = {}
    for start in range(0, len(session_ids), BATCH_SIZE):
        batch = session_ids[start : start + BATCH_SIZE]
        found = Session.objects.filter(session_id__in=batch).values_list(
            *_Stored._fields
        )
        for values in found:
            existing[values[0]] = _Stored(*values)
    return existing


def _build_row(user_id, session, digest, old, now):
    session_time, source = _session_time(session, old, now)
    # Only new or changed sessions get here. Without user_logs the timeline
    # must come from the events endpoint, and a changed session is still
    # live, so its events may have grown since the last fetch.
    needs_events = not session.user_logs
    checks = {
        CheckGroup.BIOMETRIC: session.biometric_checks or {},
        CheckGroup.DEVICE: session.device_checks or {},
    }
    return {
        "session_id": session.session_id,
        "user_id": user_id,
        "tags": session.tags or [],
        "risk_score": session.risk_score,
        "risk_explanation": session.risk_explanation,
        "recommended_action": session.recommended_action,
        "checks": checks,
        "has_unindexed_checks": any(
            _too_long_to_index(name, status)
            for statuses in checks.values()
            for name, status in statuses.items()
        ),
        "raw": session.raw,
        "raw_digest": digest,
        "first_seen_at": old.first_seen_at if old else now,
        "events_fetched_at": None,
        "events_attempts": 0,
        "changed_at": now,
        "session_time": session_time,
        "session_time_source": source,
        "needs_events": needs_events,
    }


def _session_time(session, old, now):
    earliest = session.earliest_log_time
    if earliest is not None:
        return earliest, SessionTimeSource.USER_LOGS
    if old is not None:
        # A later payload without user_logs keeps the time and its source.
        return old.session_time, old.session_time_source
    return now, SessionTimeSource.FIRST_SEEN


def _score_change(old, session, now):
    if (
        old.risk_score == session.risk_score
        and old.recommended_action == session.recommended_action
    ):
        return None
    return ScoreChange(
        session_id=session.session_id,
        observed_at=now,
        old_score=old.risk_score,
        new_score=session.risk_score,
        old_action=old.recommended_action,
        new_action=session.recommended_action,
    )


def _write(rows, changes, parsed, existing):
    bulk.insert(
        Session,
        INSERT_FIELDS + UPSERT_FIELDS,
        rows,
        conflict="session_id",
        update=UPSERT_FIELDS,
    )
    # A new session has no checks or events to replace: deleting them from
    # a cascade-linked table would only cost an index lookup per batch.
    changed_ids = [row["session_id"] for row in rows if row["session_id"] in existing]
    _delete_for(SessionCheck, changed_ids)
    _insert_checks(rows)
    with_logs = [
        row["session_id"] for row in rows if parsed[row["session_id"]].user_logs
    ]
    _delete_for(SessionEvent, [sid for sid in changed_ids if parsed[sid].user_logs])
    _insert_logged_events(with_logs, parsed)
    ScoreChange.objects.bulk_create(changes, batch_size=BATCH_SIZE)


def _delete_for(model, session_ids):
    for start in range(0, len(session_ids), BATCH_SIZE):
        model.objects.filter(
            session_id__in=session_ids[start : start + BATCH_SIZE]
        ).delete()


def _insert_checks(rows):
    checks = []
    for row in rows:
        for group, statuses in row["checks"].items():
            for name, status in statuses.items():
                if _too_long_to_index(name, status):
                    # Kept in the session's checks map and raw JSON, but too
                    # long for the indexed columns of the checks table.
                    logger.warning(
                        "%s: check %r of session %s has a name or status too "
                        "long to index; it is kept in the session's checks",
                        row["user_id"],
                        name[:40],
                        row["session_id"],
                    )
                    continue
                checks.append(
                    {
                        "session_id": row["session_id"],
                        "group": group,
                        "name": name,
                        "status": status,
                    }
                )
    bulk.insert(SessionCheck, CHECK_FIELDS, checks)


def _too_long_to_index(name, status):
    return len(name) > MAX_CHECK_TEXT or len(status) > MAX_CHECK_TEXT


def _insert_logged_events(session_ids, parsed):
    """Store user_logs as the event timeline of sessions that carry them."""
    events = [
        _event_values(sid, position, event)
        for sid in session_ids
        for position, event in enumerate(parsed[sid].user_logs)
    ]
    bulk.insert(SessionEvent, EVENT_FIELDS, events)


def replace_fetched_events(session, event_list, now):
    """Store events from the events endpoint and date the session by them.

    Returns the number of events stored, or None when the session was
    deleted (purged, erased, expired) while its events were being fetched.
    """
    events = [
        _event_row(session.session_id, position, event)
        for position, event in enumerate(event_list.events)
    ]
    timestamps = [e.timestamp for e in events if e.timestamp is not None]
    with transaction.atomic():
        # Locks the row on PostgreSQL, so a concurrent delete waits for us.
        if not Session.objects.select_for_update().filter(pk=session.pk).exists():
            logger.info(
                "%s: session %s was deleted before its events were stored",
                session.user_id,
                session.session_id,
            )
            return None
        SessionEvent.objects.filter(session_id=session.session_id).delete()
        SessionEvent.objects.bulk_create(events, batch_size=BATCH_SIZE)
        update = {"needs_events": False, "events_fetched_at": now}
        if timestamps and session.session_time_source != SessionTimeSource.USER_LOGS:
            update["session_time"] = min(timestamps)
            update["session_time_source"] = SessionTimeSource.EVENTS
        Session.objects.filter(session_id=session.session_id).update(**update)
    return len(events)


def _event_values(session_id, position, event):
    return {
        "session_id": session_id,
        "position": position,
        "action": event.action,
        "user_time": event.user_time,
        "unix_timestamp": event.unix_timestamp,
        "timestamp": event.timestamp,
    }


def _event_row(session_id, position, event):
    return SessionEvent(**_event_values(session_id, position, event))

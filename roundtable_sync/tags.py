"""Tag watches: the watched-tag list, tag polls and the lookup of their users.

A tag's sessions come without user IDs. Sessions already stored keep the
user they were stored under. The others wait as PendingTagSession rows until
their report (one request each, within the per-minute budget) names the user,
and are then stored like any other session.
"""

import dataclasses
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from roundtable_sync import account
from roundtable_sync.errors import (
    KeyRejectedError,
    NotFoundError,
    RateLimitedError,
    RetryLaterError,
    RoundtableError,
)
from roundtable_sync.identifiers import clean_all, clean_identifier
from roundtable_sync.models import (
    PendingTagSession,
    PollOutcome,
    Session,
    WatchedTag,
    WatchedUser,
)
from roundtable_sync.signals import sessions_stored
from roundtable_sync.store import BATCH_SIZE, store_sessions
from roundtable_sync.sync import poll_interval

logger = logging.getLogger(__name__)

# Length of the Session and PendingTagSession key and user ID columns.
MAX_ID_LENGTH = 255


# The watched-tag list


class InvalidTagError(ValueError):
    pass


def clean_tag(value):
    """Return the tag with surrounding whitespace trimmed, or raise.

    Tags are set by the customer's pages and kept verbatim apart from the
    ends. "." and ".." are rejected because the tags endpoint takes the tag
    only in the URL path, where they would read as dot segments.
    """
    cleaned = clean_identifier(value, "Tag", InvalidTagError)
    if cleaned in (".", ".."):
        raise InvalidTagError(
            f"Tag {cleaned!r} cannot be requested from the tags endpoint: "
            "give another tag."
        )
    return cleaned


def clean_tags(values):
    """Clean every tag and raise all errors together, if any."""
    return clean_all(values, clean_tag, InvalidTagError)


@dataclass
class TagChange:
    changed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def add_tags(tags, added_by=None, note=""):
    """Watch cleaned tags, skipping those already watched. Due at once."""
    now = timezone.now()
    change = TagChange()
    for tag in tags:
        _, created = WatchedTag.objects.get_or_create(
            tag=tag,
            defaults={
                "note": note,
                "added_by": added_by,
                "added_at": now,
                "next_poll_at": now,
            },
        )
        (change.changed if created else change.skipped).append(tag)
    if change.changed:
        logger.info(
            "Tag(s) watched by %s: %s", _actor(added_by), ", ".join(change.changed)
        )
    return change


def remove_tags(tags, removed_by=None):
    """Stop watching tags, keeping their stored sessions and dropping lookups."""
    change = TagChange()
    for tag in tags:
        deleted, _ = WatchedTag.objects.filter(tag=tag).delete()
        (change.changed if deleted else change.skipped).append(tag)
    for tag in change.changed:
        logger.info("Tag %r: no longer watched, removed by %s", tag, _actor(removed_by))
    return change


def set_active(watched_tag, active, changed_by=None):
    """Pause or resume polling of one tag; resuming makes it due at once."""
    WatchedTag.objects.filter(pk=watched_tag.pk).update(is_active=active)
    if active:
        # A claim_token marks a queued or running poll until its lease (the
        # next_poll_at value) runs out. Moving next_poll_at during the lease
        # would let a second poll of the tag start beside the first.
        now = timezone.now()
        WatchedTag.objects.filter(pk=watched_tag.pk).filter(
            Q(claim_token__isnull=True) | Q(next_poll_at__lte=now)
        ).update(next_poll_at=now)
    logger.info(
        "Tag %r: %s by %s",
        watched_tag.tag,
        "resumed" if active else "paused",
        _actor(changed_by),
    )


def _actor(user):
    return user.get_username() if user is not None else "command line"


# Tag polls


@dataclass
class TagPollResult:
    tag: str
    outcome: str
    error: str = ""
    received: int = 0
    changed: int = 0
    # Sessions of unknown users queued for a report lookup by this poll.
    queued: int = 0
    retry_at: object = None
    # True when a rejected key or a long rate limit paused the whole account.
    account_wide: bool = False

    def summary(self):
        """Return one line for logs."""
        if self.outcome == PollOutcome.SYNCED:
            return (
                f"Tag {self.tag!r}: synced, {self.received} sessions received, "
                f"{self.changed} changed, {self.queued} queued for a user lookup"
            )
        label = PollOutcome(self.outcome).label.lower()
        return f"Tag {self.tag!r}: {label}: {self.error}"


class _TagRemoved(Exception):
    pass


def sync_tag(watched_tag, client, now=timezone.now):
    """Fetch one tag's sessions, store or queue them, and record the poll.

    An API or storage failure is logged and recorded, not raised. A rejected
    key or a long rate limit pauses the account, as for user polls, and any
    other failure is recorded on the tag.
    """
    started_at = now()
    try:
        listing = client.tag_sessions(watched_tag.tag)
        result = _store_tag_sessions(watched_tag, listing, started_at)
        account.clear_pause()
    except RoundtableError as error:
        result = _failed_poll(watched_tag, error, started_at)
    except _TagRemoved:
        logger.info("Tag %r: removed during its poll", watched_tag.tag)
        return TagPollResult(
            watched_tag.tag,
            PollOutcome.FAILED,
            error="Removed from the watched tags during the poll.",
        )
    except Exception as error:
        logger.exception("Tag %r: unexpected error while syncing", watched_tag.tag)
        result = TagPollResult(
            watched_tag.tag,
            PollOutcome.FAILED,
            error=f"Unexpected error while storing sessions ({type(error).__name__}). "
            "See the worker log for details.",
        )
    _record_poll(watched_tag, result, now())
    return result


def _failed_poll(watched_tag, error, started_at):
    """Classify a failed tag poll the way user polls are classified."""
    tag = watched_tag.tag
    if isinstance(error, KeyRejectedError):
        account.pause_for_rejected_key(error, started_at)
        return TagPollResult(
            tag, PollOutcome.DEFERRED, error=str(error), account_wide=True
        )
    if isinstance(error, RateLimitedError) and error.deferred:
        account.pause_for_rate_limit(error, started_at)
        return TagPollResult(
            tag, PollOutcome.DEFERRED, error=str(error), account_wide=True
        )
    # Any HTTP response other than 401, 403 or 429 shows that the key works
    # and the account is not rate limited.
    if error.status is not None and not isinstance(error, RateLimitedError):
        account.clear_pause()
    if isinstance(error, RetryLaterError) and error.deferred:
        logger.warning(
            "Tag %r: deferred until %s: %s", tag, error.retry_at.isoformat(), error
        )
        return TagPollResult(
            tag, PollOutcome.DEFERRED, error=str(error), retry_at=error.retry_at
        )
    logger.warning("Tag %r: poll failed: %s", tag, error)
    return TagPollResult(tag, PollOutcome.FAILED, error=str(error))


def _store_tag_sessions(watched_tag, listing, now):
    sessions, warnings = _storable(listing)
    with transaction.atomic():
        # Locks the tag row on PostgreSQL, so a removal waits for this store.
        still_watched = (
            WatchedTag.objects.select_for_update().filter(pk=watched_tag.pk).exists()
        )
        if not still_watched:
            raise _TagRemoved
        known_users = _stored_user_ids([s.session_id for s in sessions])
        by_user = defaultdict(list)
        unknown = []
        for session in sessions:
            user_id = known_users.get(session.session_id)
            if user_id is None:
                unknown.append(session)
            else:
                by_user[user_id].append(session)
        stores = {
            user_id: store_sessions(user_id, user_sessions, now)
            for user_id, user_sessions in by_user.items()
        }
        queued = _queue_lookups(watched_tag, unknown, now)
    for user_id, stored in stores.items():
        _announce(user_id, stored, now)
    return TagPollResult(
        watched_tag.tag,
        PollOutcome.SYNCED,
        error=" ".join(warnings[:5]),
        received=len(listing.sessions),
        changed=sum(stored.changed for stored in stores.values()),
        queued=queued,
    )


def _storable(listing):
    sessions, warnings = [], list(listing.warnings)
    for session in listing.sessions:
        if len(session.session_id) > MAX_ID_LENGTH:
            warnings.append(
                f"Session ID {session.session_id[:40]!r}… is longer than "
                f"{MAX_ID_LENGTH} characters and was not stored."
            )
            continue
        sessions.append(session)
    return sessions, warnings


def _stored_user_ids(session_ids):
    user_ids = {}
    for start in range(0, len(session_ids), BATCH_SIZE):
        batch = session_ids[start : start + BATCH_SIZE]
        rows = Session.objects.filter(session_id__in=batch)
        user_ids.update(rows.values_list("session_id", "user_id"))
    return user_ids


def _queue_lookups(watched_tag, sessions, now):
    """Add pending lookups for new sessions and return how many were added.

    A session already pending, perhaps found by another tag, keeps its row.
    """
    ids = [session.session_id for session in sessions]
    already = set()
    for start in range(0, len(ids), BATCH_SIZE):
        batch = ids[start : start + BATCH_SIZE]
        rows = PendingTagSession.objects.filter(session_id__in=batch)
        already.update(rows.values_list("session_id", flat=True))
    PendingTagSession.objects.bulk_create(
        [
            PendingTagSession(
                session_id=session_id, watched_tag=watched_tag, first_seen_at=now
            )
            for session_id in ids
            if session_id not in already
        ],
        batch_size=BATCH_SIZE,
        ignore_conflicts=True,
    )
    return len(set(ids) - already)


def _announce(user_id, stored, now):
    """Send sessions_stored for a store that changed a watched user's sessions.

    Only the first store that finds a change records it, so without this
    signal a tag poll would hide score changes from the alert rules. A user
    not synced yet gets no signal, because its first sync is the backfill.
    Sessions new to the store are left out: a tag lists sessions far older
    than the user's own newest 100, and alerting on each would flood the
    inbox with history.
    """
    # NOTE: a session that a tag poll stores before the user's own poll sees
    # it raises no new-session alert (only later score changes do).
    if not stored.changed:
        return
    stored = dataclasses.replace(stored, new=0, new_session_ids=[])
    watched_user = WatchedUser.objects.filter(
        user_id=user_id, last_synced_at__isnull=False
    ).first()
    if watched_user is None:
        return
    responses = sessions_stored.send_robust(
        sender=WatchedUser,
        watched_user=watched_user,
        stored=stored,
        first_sync=False,
        now=now,
    )
    for receiver, response in responses:
        if isinstance(response, Exception):
            logger.error(
                "%s: signal receiver %s failed",
                user_id,
                getattr(receiver, "__qualname__", receiver),
                exc_info=response,
            )


def _record_poll(watched_tag, result, finished_at):
    if result.account_wide:
        # The pause, not the tag's schedule, delays the next poll.
        next_poll_at = finished_at
    else:
        next_poll_at = result.retry_at or finished_at + poll_interval()
    update = {
        "last_polled_at": finished_at,
        "last_poll_outcome": result.outcome,
        "last_poll_error": result.error,
        "next_poll_at": next_poll_at,
        "claim_token": None,
        "claim_holder": "",
    }
    if result.outcome == PollOutcome.SYNCED:
        update["last_synced_at"] = finished_at
    WatchedTag.objects.filter(pk=watched_tag.pk).update(**update)
    account.record_heartbeat(finished_at)


# Report lookups


@dataclass
class LookupRun:
    requests: int = 0
    stored: int = 0
    # True when a rejected key or a rate limit ended the run early.
    stopped: bool = False


def pending_lookups():
    """Return the pending sessions of active tags, in lookup order."""
    return PendingTagSession.objects.filter(watched_tag__is_active=True).order_by(
        "attempts", "first_seen_at", "session_id"
    )


def look_up_pending(client, budget, out_of_time):
    """Store pending tag sessions under the users that their reports name.

    Makes at most ``budget`` report requests, one per session, and stops
    early once ``out_of_time()`` returns True. The caller holds the lease
    that makes the budget account-wide.
    """
    # A user poll may have stored a pending session meanwhile, and then the
    # session needs no report.
    PendingTagSession.objects.filter(
        session_id__in=Session.objects.values("session_id")
    ).delete()
    run = LookupRun()
    for pending in list(pending_lookups()[:budget]):
        if out_of_time():
            break
        run.requests += 1
        outcome = _look_up_one(client, pending)
        if outcome is _STOP:
            run.stopped = True
            break
        run.stored += outcome
    if run.requests:
        logger.info("Looked up %d tag session(s), stored %d", run.requests, run.stored)
    return run


# _look_up_one's result when an account-wide failure ends the whole run.
_STOP = object()


def _look_up_one(client, pending):
    """Return 1 when the session was stored, 0 when not, or _STOP."""
    now = timezone.now()
    try:
        report = client.session_report(pending.session_id)
    except KeyRejectedError as error:
        account.pause_for_rejected_key(error, now)
        return _STOP
    except RateLimitedError as error:
        if error.deferred:
            account.pause_for_rate_limit(error, now)
        logger.warning(
            "Report of tag session %s rate limited: %s", pending.session_id, error
        )
        return _STOP
    except NotFoundError:
        logger.warning(
            "Report of tag session %s not found; the session is dropped",
            pending.session_id,
        )
        pending.delete()
        return 0
    except RoundtableError as error:
        _count_failed_lookup(pending, str(error))
        return 0
    problem = _report_problem(pending, report)
    if problem:
        _count_failed_lookup(pending, problem)
        return 0
    _store_report(pending, report, now)
    return 1


def _report_problem(pending, report):
    if report.session_id != pending.session_id:
        return f"The report names session {report.session_id[:80]!r} instead."
    if not report.user_id:
        return "The report has no user_id."
    if len(report.user_id) > MAX_ID_LENGTH:
        return f"The report's user_id is longer than {MAX_ID_LENGTH} characters."
    return ""


def _store_report(pending, report, now):
    # A report is a list item plus user_id. Storing it without user_id (the
    # row's user_id column stores it) keeps the digest equal to the list
    # item's, so the next user or tag poll does not count the session as
    # changed.
    raw = {key: value for key, value in report.raw.items() if key != "user_id"}
    session = dataclasses.replace(report, raw=raw)
    with transaction.atomic():
        stored = store_sessions(report.user_id, [session], now)
        PendingTagSession.objects.filter(pk=pending.pk).delete()
    _announce(report.user_id, stored, now)


def _count_failed_lookup(pending, problem):
    attempts = pending.attempts + 1
    if attempts >= PendingTagSession.MAX_ATTEMPTS:
        logger.warning(
            "Report of tag session %s failed %d times, giving up: %s",
            pending.session_id,
            attempts,
            problem,
        )
        PendingTagSession.objects.filter(pk=pending.pk).delete()
        return
    logger.warning(
        "Report of tag session %s failed (attempt %d), will retry: %s",
        pending.session_id,
        attempts,
        problem,
    )
    PendingTagSession.objects.filter(pk=pending.pk).update(attempts=attempts)

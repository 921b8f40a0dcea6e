"""django-q2 tasks: the per-minute dispatcher, polls, lookups, summaries.

The dispatcher is the only scheduled task (see the migration that creates
it). Tasks are queued with async_task and never retried by django-q2.
"""

import logging
import time
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from roundtable_sync import account, tags, tallies, user_risk
from roundtable_sync.bands import current_thresholds
from roundtable_sync.client import RoundtableClient
from roundtable_sync.dispatch import (
    claim_due_tags,
    claim_due_users,
    mark_running,
    release_dead_claims,
)
from roundtable_sync.errors import (
    InvalidIdError,
    KeyRejectedError,
    NotFoundError,
    RateLimitedError,
    RoundtableError,
)
from roundtable_sync.models import AccountState, Session, WatchedTag, WatchedUser
from roundtable_sync.store import replace_fetched_events
from roundtable_sync.sync import sync_user

logger = logging.getLogger(__name__)

DISPATCH_SCHEDULE_NAME = "roundtable: dispatch polls"


def dispatch_polls():
    """Queue one poll per due user and tag, then the events and upkeep tasks.

    Runs every minute and returns the number of polls queued.
    """
    now = timezone.now()
    account.record_heartbeat(now)
    release_dead_claims(now)
    release_dead_claims(now, model=WatchedTag)
    try:
        return _queue_polls(now)
    finally:
        # After the polls, so that they take the free workers first. Also
        # without a key, during a pause and after a failed claim: erasure
        # and retention change sessions without polls.
        _queue_upkeep()


def _queue_polls(now):
    if not settings.ROUNDTABLE_API_KEY:
        logger.error("ROUNDTABLE_API_KEY is not set: no user was polled")
        return 0
    pause = account.active_pause(now)
    if pause is not None:
        logger.info(
            "Polling paused until %s (%s): nothing queued",
            pause.paused_until.isoformat(),
            pause.get_pause_reason_display(),
        )
        return 0

    # After a pause ends, one poll probes the API before everyone polls again.
    probing = AccountState.load().pause_reason != ""
    token, claimed = claim_due_users(now, limit=1 if probing else None)
    for pk in claimed:
        async_task(poll_user, pk, str(token), group="poll")
    tag_claimed = []
    if not (probing and claimed):
        tag_token, tag_claimed = claim_due_tags(now, limit=1 if probing else None)
        for pk in tag_claimed:
            async_task(poll_tag, pk, str(tag_token), group="poll")
    queued = len(claimed) + len(tag_claimed)
    if queued:
        logger.info(
            "Queued %d user poll(s) and %d tag poll(s)%s",
            len(claimed),
            len(tag_claimed),
            " (probe)" if probing else "",
        )
    if settings.ROUNDTABLE_EVENTS_PER_MINUTE and (
        _sessions_need_events() or tags.pending_lookups().exists()
    ):
        async_task(fetch_events, group="events")
    return queued


def _queue_upkeep():
    """Queue the folding of the overview's tallies and summaries, if due."""
    if tallies.has_unfolded_rows():
        async_task(compact_tallies, group="tallies")
    if user_risk.needs_refresh(current_thresholds().review):
        async_task(refresh_user_risk, group="user-risk")


def compact_tallies():
    """Fold the new rows of the hourly tallies (see roundtable_sync.tallies)."""
    return tallies.compact()


def refresh_user_risk():
    """Recount the per-user summaries (see roundtable_sync.user_risk)."""
    return user_risk.refresh()


def queue_immediate_poll(watched_user):
    """Claim and queue a poll of one user now, e.g. right after it was added."""
    now = timezone.now()
    if not settings.ROUNDTABLE_API_KEY or account.active_pause(now) is not None:
        return False
    token, claimed = claim_due_users(now, user_pks=[watched_user.pk])
    for pk in claimed:
        async_task(poll_user, pk, str(token), group="poll")
    return bool(claimed)


def queue_immediate_tag_poll(watched_tag):
    """Claim and queue a poll of one tag now, e.g. right after it was added."""
    now = timezone.now()
    if not settings.ROUNDTABLE_API_KEY or account.active_pause(now) is not None:
        return False
    token, claimed = claim_due_tags(now, tag_pks=[watched_tag.pk])
    for pk in claimed:
        async_task(poll_tag, pk, str(token), group="poll")
    return bool(claimed)


def poll_user(watched_user_pk, claim_token):
    """Poll one claimed user; skip it if the claim was taken over or dropped."""
    user = WatchedUser.objects.filter(
        pk=watched_user_pk, claim_token=claim_token, is_active=True
    ).first()
    if user is None:
        logger.info(
            "Poll of watched user %s skipped: claim no longer held", watched_user_pk
        )
        return None

    # Another poll may have paused the account after this one was queued.
    if account.active_pause(timezone.now()) is not None:
        _release_claim(user)
        logger.info("%s: poll skipped: polling is paused account-wide", user.user_id)
        return None

    with _released_on_database_error(user):
        # sync_sessions may have taken the claim over since it was read.
        if not mark_running(user.pk, claim_token):
            logger.info("%s: poll skipped: claim taken over", user.user_id)
            return None
        logger.info("%s: poll started", user.user_id)
        with RoundtableClient.from_settings() as client:
            result = sync_user(user, client)
    logger.info("%s", result.summary())
    return result.outcome


def poll_tag(watched_tag_pk, claim_token):
    """Poll one claimed tag; skip it if the claim was taken over or dropped."""
    watched = WatchedTag.objects.filter(
        pk=watched_tag_pk, claim_token=claim_token, is_active=True
    ).first()
    if watched is None:
        logger.info(
            "Poll of watched tag %s skipped: claim no longer held", watched_tag_pk
        )
        return None

    if account.active_pause(timezone.now()) is not None:
        _release_claim(watched)
        logger.info("Tag %r: poll skipped: polling is paused account-wide", watched.tag)
        return None

    logger.info("Tag %r: poll started", watched.tag)
    with _released_on_database_error(watched):
        mark_running(watched.pk, claim_token, model=WatchedTag)
        with RoundtableClient.from_settings() as client:
            result = tags.sync_tag(watched, client)
    logger.info("%s", result.summary())
    return result.outcome


def _release_claim(watched):
    """Drop a claim without polling, leaving the row due for the next pass."""
    type(watched).objects.filter(pk=watched.pk, claim_token=watched.claim_token).update(
        claim_token=None, claim_holder="", next_poll_at=timezone.now()
    )


@contextmanager
def _released_on_database_error(watched):
    """Release the claim if the poll fails on the database, then re-raise.

    sync_user records API and storage failures itself, but recording needs
    the database too: an SQLite write lock held past its timeout, or a lost
    PostgreSQL connection, fails the task. Releasing the claim makes the
    next dispatch poll the row again instead of waiting out the lease, and
    the API still returns the sessions this poll did not store.
    """
    try:
        yield
    except DatabaseError:
        logger.exception("%s: poll failed on the database", watched)
        try:
            _release_claim(watched)
        except DatabaseError as error:
            # Still failing: the claim ends with its lease instead.
            logger.error("%s: claim not released: %s", watched, error)
        raise


def _sessions_need_events():
    return Session.objects.filter(needs_events=True).exists()


def fetch_events(budget=None, monotonic=time.monotonic):
    """Look up the users of pending tag sessions, then fetch missing events.

    Spends at most ``budget`` requests (ROUNDTABLE_EVENTS_PER_MINUTE by
    default) on both, and one request deadline of wall time. A lease on the
    account row lets one such task run at a time, so the budget is
    account-wide. Returns the number of sessions whose events were fetched.
    """
    budget = settings.ROUNDTABLE_EVENTS_PER_MINUTE if budget is None else budget
    now = timezone.now()
    if not _take_events_lease(now) or account.active_pause(now) is not None:
        return 0
    stop_at = monotonic() + settings.ROUNDTABLE_REQUEST_DEADLINE

    def out_of_time():
        return monotonic() >= stop_at

    fetched = 0
    try:
        with RoundtableClient.from_settings() as client:
            lookups = tags.look_up_pending(client, _lookup_share(budget), out_of_time)
            if not lookups.stopped:
                fetched = _fetch_pending_events(
                    client, budget - lookups.requests, out_of_time
                )
    finally:
        AccountState.objects.filter(pk=1).update(events_lease_until=None)
    logger.info("Fetched events for %d session(s)", fetched)
    return fetched


def _lookup_share(budget):
    """Return the part of the budget that tag-session lookups may spend.

    Half of it, rounded up, while sessions wait for events, so that neither
    queue starves the other, and all of it otherwise. Requests that the
    lookups leave unspent go to events.
    """
    if _sessions_need_events():
        return budget - budget // 2
    return budget


def _fetch_pending_events(client, budget, out_of_time):
    pending = Session.objects.filter(needs_events=True).order_by(
        "events_attempts", "first_seen_at"
    )
    fetched = 0
    for session in pending[: max(budget, 0)]:
        if out_of_time():
            break
        outcome = _fetch_one(client, session)
        if outcome is _STOP:
            break
        fetched += outcome
    return fetched


# _fetch_one's result when an account-wide failure ends the whole batch.
_STOP = object()


def _take_events_lease(now):
    AccountState.load()
    lease_until = now + timedelta(seconds=settings.Q_CLUSTER["timeout"])
    return bool(
        AccountState.objects.filter(pk=1)
        .filter(Q(events_lease_until__isnull=True) | Q(events_lease_until__lt=now))
        .update(events_lease_until=lease_until)
    )


def _fetch_one(client, session):
    """Fetch and store one session's events.

    Returns 1 when events were stored, 0 when this session failed, or _STOP
    when the key was rejected or the account is rate limited.
    """
    now = timezone.now()
    try:
        events = client.session_events(session.session_id)
    except KeyRejectedError as error:
        account.pause_for_rejected_key(error, now)
        return _STOP
    except RateLimitedError as error:
        if error.deferred:
            account.pause_for_rate_limit(error, now)
        logger.warning("%s: events fetch rate limited: %s", session.user_id, error)
        return _STOP
    except NotFoundError:
        logger.warning(
            "%s: events of session %s not found; keeping its current time",
            session.user_id,
            session.session_id,
        )
        _give_up_events(session, now)
        return 0
    except InvalidIdError as error:
        # The ID can never be requested, so retrying would only fail again.
        logger.warning(
            "%s: events of session %r not fetched, keeping its current time: %s",
            session.user_id,
            session.session_id,
            error,
        )
        _give_up_events(session, now)
        return 0
    except RoundtableError as error:
        _count_failed_attempt(session, now, error)
        return 0
    stored = replace_fetched_events(session, events, now)
    return 0 if stored is None else 1


def _count_failed_attempt(session, now, error):
    attempts = session.events_attempts + 1
    if attempts >= Session.MAX_EVENTS_ATTEMPTS:
        logger.warning(
            "%s: events of session %s failed %d times, giving up: %s",
            session.user_id,
            session.session_id,
            attempts,
            error,
        )
        _give_up_events(session, now)
        return
    logger.warning(
        "%s: events of session %s failed (attempt %d), will retry: %s",
        session.user_id,
        session.session_id,
        attempts,
        error,
    )
    Session.objects.filter(pk=session.pk).update(events_attempts=attempts)


def _give_up_events(session, now):
    Session.objects.filter(pk=session.pk).update(
        needs_events=False, events_fetched_at=now
    )

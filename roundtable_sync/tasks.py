"""django-q2 tasks: the per-minute dispatcher, per-user polls, event fetching.

The dispatcher is the only scheduled task (see the migration that creates
it). Tasks are queued with async_task and never retried by django-q2.
"""

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from roundtable_sync import account
from roundtable_sync.client import RoundtableClient
from roundtable_sync.dispatch import claim_due_users
from roundtable_sync.errors import (
    KeyRejectedError,
    NotFoundError,
    RateLimitedError,
    RetryLaterError,
    RoundtableError,
)
from roundtable_sync.models import AccountState, Session, WatchedUser
from roundtable_sync.store import replace_fetched_events
from roundtable_sync.sync import sync_user

logger = logging.getLogger(__name__)

DISPATCH_SCHEDULE_NAME = "roundtable: dispatch polls"


def dispatch_polls():
    """Queue one poll per due user, then one events task. Runs every minute."""
    now = timezone.now()
    account.record_heartbeat(now)
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
    if claimed:
        logger.info("Queued %d poll(s)%s", len(claimed), " (probe)" if probing else "")
    if settings.ROUNDTABLE_EVENTS_PER_MINUTE and _sessions_need_events():
        async_task(fetch_events, group="events")
    return len(claimed)


def queue_immediate_poll(watched_user):
    """Claim and queue a poll of one user now, e.g. right after it was added."""
    now = timezone.now()
    if account.active_pause(now) is not None:
        return False
    token, claimed = claim_due_users(now, user_pks=[watched_user.pk])
    for pk in claimed:
        async_task(poll_user, pk, str(token), group="poll")
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
    logger.info("%s: poll started", user.user_id)
    result = sync_user(user, RoundtableClient.from_settings())
    logger.info("%s", result.summary())
    return result.outcome


def _sessions_need_events():
    return Session.objects.filter(needs_events=True).exists()


def fetch_events(budget=None, monotonic=time.monotonic):
    """Fetch events for sessions that arrived without user_logs.

    Spends at most ``budget`` requests (ROUNDTABLE_EVENTS_PER_MINUTE by
    default) and one request deadline of wall time. A lease on the account
    row lets one events task run at a time, so the budget is account-wide.
    """
    budget = settings.ROUNDTABLE_EVENTS_PER_MINUTE if budget is None else budget
    now = timezone.now()
    if not _take_events_lease(now) or account.active_pause(now) is not None:
        return 0
    client = RoundtableClient.from_settings()
    stop_at = monotonic() + settings.ROUNDTABLE_REQUEST_DEADLINE
    fetched = 0
    try:
        pending = Session.objects.filter(needs_events=True).order_by("first_seen_at")
        for session in pending[:budget]:
            if monotonic() >= stop_at or not _fetch_one(client, session):
                break
            fetched += 1
    finally:
        AccountState.objects.filter(pk=1).update(events_lease_until=None)
    logger.info("Fetched events for %d session(s)", fetched)
    return fetched


def _take_events_lease(now):
    AccountState.load()
    lease_until = now + timedelta(seconds=settings.Q_CLUSTER["timeout"])
    return bool(
        AccountState.objects.filter(pk=1)
        .filter(Q(events_lease_until__isnull=True) | Q(events_lease_until__lt=now))
        .update(events_lease_until=lease_until)
    )


def _fetch_one(client, session):
    """Fetch and store one session's events; False stops the whole batch."""
    now = timezone.now()
    try:
        events = client.session_events(session.session_id)
    except KeyRejectedError as error:
        account.pause_for_rejected_key(error, now)
        return False
    except RateLimitedError as error:
        account.pause_for_rate_limit(error, now)
        return False
    except RetryLaterError as error:
        logger.warning(
            "%s: events fetch failed, will retry: %s", session.user_id, error
        )
        return False
    except NotFoundError:
        logger.warning(
            "%s: events of session %s not found; keeping the first-seen time",
            session.user_id,
            session.session_id,
        )
        Session.objects.filter(pk=session.pk).update(
            needs_events=False, events_fetched_at=now
        )
        return True
    except RoundtableError as error:
        logger.warning(
            "%s: events of session %s unusable, not retried: %s",
            session.user_id,
            session.session_id,
            error,
        )
        Session.objects.filter(pk=session.pk).update(
            needs_events=False, events_fetched_at=now
        )
        return True
    replace_fetched_events(session, events, now)
    return True

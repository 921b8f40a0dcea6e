"""Poll one watched user and record the outcome: shared by task and command."""

import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import models as db_models
from django.db import transaction
from django.utils import timezone

from roundtable_sync import account
from roundtable_sync.errors import (
    KeyRejectedError,
    RateLimitedError,
    RetryLaterError,
    RoundtableError,
)
from roundtable_sync.models import CoverageGap, PollOutcome, PollRecord, WatchedUser
from roundtable_sync.signals import poll_recorded, sessions_stored
from roundtable_sync.store import API_PAGE_LIMIT, store_sessions

logger = logging.getLogger(__name__)

# Names how parsing.py and store.py turn a sessions response into rows. Change
# it whenever they would store a byte-identical response differently, so that
# digests recorded by older code no longer let a poll skip the store.
RESPONSE_FORMAT = "roundtable-user-sessions-store/1"


@dataclass
class PollResult:
    user_id: str
    outcome: str
    error: str = ""
    received: int = 0
    new: int = 0
    changed: int = 0
    coverage_gap: bool = False
    retry_at: object = None
    # True when a rejected key or a long rate limit paused the whole account.
    account_wide: bool = False

    def summary(self):
        """Return one line for logs and the sync_sessions command."""
        if self.outcome == PollOutcome.SYNCED:
            line = (
                f"{self.user_id}: synced, {self.received} sessions received, "
                f"{self.new} new, {self.changed} changed"
            )
            if self.coverage_gap:
                line += ", possible coverage gap (100 sessions, none seen before)"
            return line
        return f"{self.user_id}: {self.get_outcome_label()}: {self.error}"

    def get_outcome_label(self):
        return PollOutcome(self.outcome).label.lower()


def poll_interval():
    return timedelta(seconds=settings.ROUNDTABLE_POLL_INTERVAL)


def response_digest(content):
    """Return the SHA-256 (hex) that identifies a sessions response as stored.

    It covers RESPONSE_FORMAT and the retention period as well as the body's
    bytes, because another retention period stores other sessions of the
    same response.
    """
    digest = hashlib.sha256()
    header = f"{RESPONSE_FORMAT}\nretention_days={settings.ROUNDTABLE_RETENTION_DAYS}\n"
    digest.update(header.encode())
    digest.update(content)
    return digest.hexdigest()


def sync_user(watched_user, client, now=timezone.now):
    """Fetch one user's sessions, store them and record the poll on the user.

    A response byte-identical to the last one stored for the user (same
    response_digest) is neither parsed nor stored again: the poll is recorded
    as synced with that response's session count and warnings.

    Never raises for an API or storage failure: the failure is logged and
    recorded on the user (or, for a rejected key or a long rate limit, once
    on the account), so one user never stops the others.
    """
    started_at = now()
    try:
        response = client.user_sessions_response(watched_user.user_id)
        digest = response_digest(response.content)
        if _already_stored(watched_user, digest):
            result = _unchanged(watched_user)
        else:
            result = _store(watched_user, response.parse(), started_at, digest)
        account.clear_pause()
    except KeyRejectedError as error:
        account.pause_for_rejected_key(error, started_at)
        result = _account_wide(watched_user, error)
    except RateLimitedError as error:
        if error.deferred:
            account.pause_for_rate_limit(error, started_at)
            result = _account_wide(watched_user, error)
        else:
            result = _failed(watched_user, error)
    except RetryLaterError as error:
        _clear_pause_if_answered(error)
        if error.deferred:
            result = _deferred(watched_user, error, error.retry_at)
        else:
            result = _failed(watched_user, error)
    except RoundtableError as error:
        _clear_pause_if_answered(error)
        result = _failed(watched_user, error)
    except _UserRemoved:
        logger.info("%s: removed from the watchlist during its poll", watched_user)
        return PollResult(
            watched_user.user_id,
            PollOutcome.FAILED,
            error="Removed from the watchlist during the poll; nothing was stored.",
        )
    except Exception as error:
        logger.exception("%s: unexpected error while syncing", watched_user.user_id)
        result = PollResult(
            watched_user.user_id,
            PollOutcome.FAILED,
            error=f"Unexpected error while storing sessions ({type(error).__name__}). "
            "See the worker log for details.",
        )
    finished_at = now()
    _record(watched_user, result, started_at, finished_at)
    _send(poll_recorded, watched_user=watched_user, result=result, now=finished_at)
    return result


def _send(signal, **kwargs):
    """Send a signal; a receiver's error is logged and never fails the poll."""
    for receiver, response in signal.send_robust(sender=WatchedUser, **kwargs):
        if isinstance(response, Exception):
            logger.error(
                "%s: signal receiver %s failed",
                kwargs["watched_user"].user_id,
                getattr(receiver, "__qualname__", receiver),
                exc_info=response,
            )


class _UserRemoved(Exception):
    pass


def _clear_pause_if_answered(error):
    # Any HTTP response other than 401, 403 or 429 shows that the key works and
    # the account is not rate limited, so an ended pause's probe is over.
    if error.status is not None:
        account.clear_pause()


def _already_stored(watched_user, digest):
    # last_synced_at guards against a digest whose store committed but whose
    # poll was never recorded, so that the first sync's signal is not lost.
    # The digest was read when the task started: one cleared during this
    # poll's request takes effect at the next poll.
    return (
        watched_user.response_digest == digest
        and watched_user.last_synced_at is not None
    )


def _unchanged(watched_user):
    logger.debug(
        "%s: response identical to the last one stored, so not parsed or stored",
        watched_user.user_id,
    )
    return PollResult(
        watched_user.user_id,
        PollOutcome.SYNCED,
        error=watched_user.response_warnings,
        received=watched_user.response_sessions,
    )


def _store(watched_user, listing, now, digest):
    previous_sync_at = watched_user.last_synced_at
    with transaction.atomic():
        # Locks the row on PostgreSQL (SQLite's write lock covers it), so a
        # purge that removes the user waits for this store, then deletes
        # what it wrote, instead of racing it.
        still_watched = (
            WatchedUser.objects.select_for_update().filter(pk=watched_user.pk).exists()
        )
        if not still_watched:
            raise _UserRemoved
        stored = store_sessions(watched_user.user_id, listing.sessions, now)
        warnings = " ".join((listing.warnings + stored.skipped)[:5])
        # Written in the store's transaction, so the digest never describes
        # sessions that a rolled-back store did not write.
        WatchedUser.objects.filter(pk=watched_user.pk).update(
            response_digest=digest,
            response_sessions=stored.received,
            response_warnings=warnings,
        )
    _send(
        sessions_stored,
        watched_user=watched_user,
        stored=stored,
        first_sync=previous_sync_at is None,
        now=now,
    )
    gap = (
        previous_sync_at is not None
        and stored.new > 0
        and listing.item_count >= API_PAGE_LIMIT
        and stored.changed == 0
        and stored.unchanged == 0
        and stored.forgotten == 0
    )
    if gap:
        CoverageGap.objects.create(
            user_id=watched_user.user_id,
            detected_at=now,
            previous_sync_at=previous_sync_at,
        )
        logger.warning(
            "%s: 100 sessions returned and none stored before: sessions between "
            "%s and now may be missing",
            watched_user.user_id,
            previous_sync_at.isoformat(),
        )
    return PollResult(
        watched_user.user_id,
        PollOutcome.SYNCED,
        error=warnings,
        received=stored.received,
        new=stored.new,
        changed=stored.changed,
        coverage_gap=gap,
    )


def _account_wide(watched_user, error):
    """Return the result of a poll stopped by an account-wide pause.

    The user stays due: the pause, not the user's own schedule, delays the
    next poll, so a fixed key or an ended wait resumes it at once.
    """
    return PollResult(
        watched_user.user_id,
        PollOutcome.DEFERRED,
        error=str(error),
        account_wide=True,
    )


def _deferred(watched_user, error, retry_at):
    logger.warning(
        "%s: deferred until %s: %s", watched_user.user_id, retry_at.isoformat(), error
    )
    return PollResult(
        watched_user.user_id, PollOutcome.DEFERRED, error=str(error), retry_at=retry_at
    )


def _failed(watched_user, error):
    logger.warning("%s: poll failed: %s", watched_user.user_id, error)
    return PollResult(watched_user.user_id, PollOutcome.FAILED, error=str(error))


def _record(watched_user, result, started_at, finished_at):
    if result.account_wide:
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
    if result.coverage_gap:
        update["coverage_gap_at"] = finished_at
    with transaction.atomic():
        if not WatchedUser.objects.filter(pk=watched_user.pk).update(**update):
            return  # Removed from the watchlist meanwhile: nothing to record on.
        PollRecord.objects.create(
            user_id=watched_user.user_id,
            started_at=started_at,
            finished_at=finished_at,
            outcome=result.outcome,
            error=result.error,
            sessions_received=result.received,
            sessions_new=result.new,
            sessions_changed=result.changed,
        )
        _prune_poll_records(watched_user.user_id)
    account.record_heartbeat(finished_at)


def _prune_poll_records(user_id):
    history = PollRecord.objects.filter(user_id=user_id)
    keep = history.order_by("-started_at", "-pk").values("pk")[
        : PollRecord.KEEP_PER_USER
    ]
    history.exclude(pk__in=db_models.Subquery(keep)).delete()

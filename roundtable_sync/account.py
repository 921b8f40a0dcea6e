"""Account-wide polling state: pauses after a rejected key or rate limit.

These failures concern every watched user, so they are recorded once on the
AccountState row and stop all polling, instead of hammering the API and
writing the same error on each user.
"""

import hashlib
import hmac
import logging
from datetime import timedelta

from django.conf import settings

from roundtable_sync.models import AccountState, PauseReason

logger = logging.getLogger(__name__)

# A rejected key is tried again after this long even if it did not change,
# in case the vendor restores access.
KEY_RECHECK_INTERVAL = timedelta(hours=1)
# Pause after a rate limit that gave no Retry-After.
DEFAULT_RATE_LIMIT_PAUSE = timedelta(seconds=60)


def key_fingerprint(api_key):
    """Return an HMAC of the key under SECRET_KEY; the key cannot be recovered."""
    return hmac.new(
        settings.SECRET_KEY.encode(), api_key.encode(), hashlib.sha256
    ).hexdigest()


def active_pause(now):
    """Return the AccountState if polling is paused at ``now``, else None.

    A pause for a rejected key ends early when the configured key changes.
    """
    state = AccountState.load()
    if state.paused_until is None or state.paused_until <= now:
        return None
    if (
        state.pause_reason == PauseReason.KEY_REJECTED
        and state.rejected_key_fingerprint
        != key_fingerprint(settings.ROUNDTABLE_API_KEY)
    ):
        logger.info("The API key changed since it was rejected: resuming polling")
        clear_pause()
        return None
    return state


def pause_for_rejected_key(error, now):
    until = now + KEY_RECHECK_INTERVAL
    _pause(PauseReason.KEY_REJECTED, str(error), until)
    AccountState.objects.filter(pk=1).update(
        rejected_key_fingerprint=key_fingerprint(settings.ROUNDTABLE_API_KEY)
    )
    return until


def pause_for_rate_limit(error, now):
    until = error.retry_at or now + DEFAULT_RATE_LIMIT_PAUSE
    _pause(PauseReason.RATE_LIMITED, str(error), until)
    return until


def _pause(reason, message, until):
    AccountState.load()
    AccountState.objects.filter(pk=1).update(
        paused_until=until, pause_reason=reason, pause_error=message
    )
    logger.error("Polling paused until %s: %s", until.isoformat(), message)


def end_pause_early(now):
    """End a pause now, keeping its reason so the next dispatch probes first.

    The dispatcher polls one user while an ended pause still has a reason,
    and only a successful response clears it; a key that is still rejected
    costs one request, not one per user.
    """
    updated = AccountState.objects.filter(pk=1, paused_until__gt=now).update(
        paused_until=now
    )
    if updated:
        logger.info("Account-wide pause ended early: the next dispatch probes")


def clear_pause():
    """End any pause, after a successful request proved the API works again."""
    updated = (
        AccountState.objects.filter(pk=1)
        .exclude(pause_reason="")
        .update(
            paused_until=None,
            pause_reason="",
            pause_error="",
            rejected_key_fingerprint="",
        )
    )
    if updated:
        logger.info("Account-wide pause cleared: polling resumes")


def record_heartbeat(now):
    AccountState.load()
    AccountState.objects.filter(pk=1).update(heartbeat_at=now)

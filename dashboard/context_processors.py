"""Banners shown on every page: sandbox data, account pause, worker status."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.functional import SimpleLazyObject

from roundtable_sync.account import active_pause
from roundtable_sync.models import AccountState


@dataclass
class PollingStatus:
    heartbeat_at: datetime | None
    # The AccountState while polling is paused account-wide, else None.
    pause: AccountState | None
    # True when the worker's heartbeat is missing or older than stale_after.
    stale: bool
    stale_after: timedelta


def polling_status(now):
    """Read the account row: one query, or two while polling is paused."""
    state = AccountState.load()
    pause = None
    if state.paused_until is not None and state.paused_until > now:
        # active_pause() also ends a key-rejected pause once the key changed.
        pause = active_pause(now)
    # The dispatcher records a heartbeat every minute, even while paused, so
    # two poll intervals without one means no worker is running.
    stale_after = timedelta(seconds=2 * settings.ROUNDTABLE_POLL_INTERVAL)
    heartbeat_at = state.heartbeat_at
    return PollingStatus(
        heartbeat_at=heartbeat_at,
        pause=pause,
        stale=heartbeat_at is None or now - heartbeat_at > stale_after,
        stale_after=stale_after,
    )


def banners(request):
    """Add ``roundtable_sandbox`` and, for signed-in users, ``polling_status``.

    The status is read lazily, so pages that do not show the banners (the
    admin) cost no query.
    """
    context = {"roundtable_sandbox": settings.ROUNDTABLE_SANDBOX}
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        context["polling_status"] = SimpleLazyObject(
            lambda: polling_status(timezone.now())
        )
    return context

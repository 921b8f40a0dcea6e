"""Claim watched users atomically so each is polled once per interval."""

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db.models import Q

from roundtable_sync.models import WatchedUser

logger = logging.getLogger(__name__)

_BATCH_SIZE = 500


def claim_lease():
    """Return how long a claimed user waits before another claim may take it.

    It outlasts the poll task's timeout and the broker's redelivery, so only
    a poll that died with its worker (kill -9) is claimed again.
    """
    return timedelta(seconds=settings.Q_CLUSTER["retry"])


def claim_due_users(now, limit=None, user_pks=None):
    """Claim active users whose poll is due and return (token, claimed pks)."""
    return claim(due_candidates(now, limit, user_pks), now)


def due_candidates(now, limit=None, user_pks=None):
    """Return the pks of active users due at ``now``, most overdue first."""
    due = WatchedUser.objects.filter(is_active=True, next_poll_at__lte=now)
    if user_pks is not None:
        due = due.filter(pk__in=user_pks)
    candidates = list(due.order_by("next_poll_at").values_list("pk", flat=True))
    return candidates if limit is None else candidates[:limit]


def claim(candidates, now):
    """Claim those candidates that are still due, and return (token, pks).

    The conditional UPDATE re-checks the due time and moves it past ``now``,
    so a second dispatcher or cluster claiming the same candidates at the
    same moment gets none of them: on PostgreSQL the row lock makes the
    second UPDATE re-read the row, and SQLite runs one writer at a time.
    """
    token = uuid.uuid4()
    for start in range(0, len(candidates), _BATCH_SIZE):
        batch = candidates[start : start + _BATCH_SIZE]
        WatchedUser.objects.filter(
            pk__in=batch, is_active=True, next_poll_at__lte=now
        ).update(next_poll_at=now + claim_lease(), claim_token=token)
    return token, _claimed(token)


def claim_now(user_pks, now):
    """Claim users for a poll now, due or not, unless a live claim holds them.

    Used by sync_sessions, which polls on demand but must not poll a user
    whose queued or running poll still holds its lease.
    """
    token = uuid.uuid4()
    WatchedUser.objects.filter(pk__in=user_pks).filter(
        Q(claim_token__isnull=True) | Q(next_poll_at__lte=now)
    ).update(next_poll_at=now + claim_lease(), claim_token=token)
    return token, _claimed(token)


def _claimed(token):
    return list(
        WatchedUser.objects.filter(claim_token=token).values_list("pk", flat=True)
    )

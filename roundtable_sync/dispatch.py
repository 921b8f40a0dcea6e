"""Claim due watched users atomically so each is polled once per interval."""

import logging
import uuid
from datetime import timedelta

from django.conf import settings

from roundtable_sync.models import WatchedUser

logger = logging.getLogger(__name__)


def claim_lease():
    """Return how long a claimed user waits before another claim may take it.

    It outlasts the poll task's timeout and the broker's redelivery, so only
    a poll that died with its worker (kill -9) is claimed again.
    """
    return timedelta(seconds=settings.Q_CLUSTER["retry"])


def claim_due_users(now, limit=None, user_pks=None):
    """Claim active users whose poll is due and return (token, claimed pks).

    The conditional UPDATE moves next_poll_at past ``now``, so a second
    dispatcher or cluster running at the same moment finds nothing to claim:
    on PostgreSQL the row lock makes the loser re-check the condition, and
    SQLite runs one write transaction at a time.
    """
    token = uuid.uuid4()
    due = WatchedUser.objects.filter(is_active=True, next_poll_at__lte=now)
    if user_pks is not None:
        due = due.filter(pk__in=user_pks)
    candidates = list(due.order_by("next_poll_at").values_list("pk", flat=True))
    if limit is not None:
        candidates = candidates[:limit]
    for start in range(0, len(candidates), 500):
        batch = candidates[start : start + 500]
        due.filter(pk__in=batch).update(
            next_poll_at=now + claim_lease(), claim_token=token
        )
    claimed = list(
        WatchedUser.objects.filter(claim_token=token).values_list("pk", flat=True)
    )
    return token, claimed

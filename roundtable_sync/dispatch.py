"""Claim watched users and tags atomically so each is polled once per interval.

The functions take the model to claim from, WatchedUser by default; any
model with is_active, next_poll_at and claim_token fields works.
"""

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db.models import Q

from roundtable_sync.models import WatchedTag, WatchedUser

logger = logging.getLogger(__name__)

_BATCH_SIZE = 500


def claim_lease():
    """Return how long a claimed row waits before another claim may take it.

    It outlasts the poll task's timeout and the broker's redelivery, so only
    a poll that died with its worker (kill -9) is claimed again.
    """
    return timedelta(seconds=settings.Q_CLUSTER["retry"])


def claim_due_users(now, limit=None, user_pks=None):
    """Claim active users whose poll is due and return (token, claimed pks)."""
    return claim(due_candidates(now, limit, user_pks), now)


def claim_due_tags(now, limit=None, tag_pks=None):
    """Claim active tags whose poll is due and return (token, claimed pks)."""
    candidates = due_candidates(now, limit, tag_pks, model=WatchedTag)
    return claim(candidates, now, model=WatchedTag)


def due_candidates(now, limit=None, pks=None, model=WatchedUser):
    """Return the pks of active rows due at ``now``, most overdue first."""
    due = model.objects.filter(is_active=True, next_poll_at__lte=now)
    if pks is not None:
        due = due.filter(pk__in=pks)
    candidates = list(due.order_by("next_poll_at").values_list("pk", flat=True))
    return candidates if limit is None else candidates[:limit]


def claim(candidates, now, model=WatchedUser):
    """Claim those candidates that are still due, and return (token, pks).

    The conditional UPDATE re-checks the due time and moves it past ``now``,
    so a second dispatcher or cluster claiming the same candidates at the
    same moment gets none of them: on PostgreSQL the row lock makes the
    second UPDATE re-read the row, and SQLite runs one writer at a time.
    """
    token = uuid.uuid4()
    for start in range(0, len(candidates), _BATCH_SIZE):
        batch = candidates[start : start + _BATCH_SIZE]
        model.objects.filter(
            pk__in=batch, is_active=True, next_poll_at__lte=now
        ).update(next_poll_at=now + claim_lease(), claim_token=token)
    return token, _claimed(token, model)


def claim_now(pks, now, model=WatchedUser):
    """Claim rows for a poll now, due or not, unless a live claim has them.

    Used by sync_sessions, which polls on demand but must not poll a user
    whose queued or running poll still has its lease.
    """
    token = uuid.uuid4()
    model.objects.filter(pk__in=pks).filter(
        Q(claim_token__isnull=True) | Q(next_poll_at__lte=now)
    ).update(next_poll_at=now + claim_lease(), claim_token=token)
    return token, _claimed(token, model)


def _claimed(token, model):
    return list(model.objects.filter(claim_token=token).values_list("pk", flat=True))

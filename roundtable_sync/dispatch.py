"""Claim watched users and tags atomically so each is polled once per interval.

The functions take the model to claim from, WatchedUser by default; any
model with is_active, next_poll_at, claim_token and claim_holder fields works.

A claim ends when its poll records an outcome. A claim whose poll never
finishes ends in one of two ways. If the poll had started and its process
died, the next dispatch on the same host releases it (see
release_dead_claims), so a worker killed mid-poll and restarted polls its
users again within about 90 seconds of the restart. Otherwise it ends with its lease
(claim_lease), 210 s at the default ROUNDTABLE_REQUEST_DEADLINE.
"""

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db.models import Q

from roundtable_sync.holders import current_holder, holder_is_dead
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
        ).update(next_poll_at=now + claim_lease(), claim_token=token, claim_holder="")
    return token, _claimed(token, model)


def claim_now(pks, now, model=WatchedUser):
    """Claim rows for a poll now, due or not, unless a running poll has them.

    Used by sync_sessions, which polls on demand but must not poll a user
    whose running poll still has its lease. A claim whose poll is queued but
    not started is taken over: without a cluster, as when cron runs
    sync_sessions, nothing would ever start it, and a queued task that does
    start later finds its token gone and skips the user.
    """
    token = uuid.uuid4()
    model.objects.filter(pk__in=pks).filter(
        Q(claim_token__isnull=True) | Q(next_poll_at__lte=now) | Q(claim_holder="")
    ).update(next_poll_at=now + claim_lease(), claim_token=token, claim_holder="")
    return token, _claimed(token, model)


def mark_running(pk, token, model=WatchedUser):
    """Record this process as the holder of a claim whose poll starts now.

    Returns False when the claim is no longer held with ``token``.
    """
    claimed_row = model.objects.filter(pk=pk, claim_token=token)
    return bool(claimed_row.update(claim_holder=current_holder()))


def release_dead_claims(now, model=WatchedUser):
    """Release claims whose poll started in a process that has since died.

    The rows become due at ``now``, so the same dispatch claims them again.
    Only holders on this host can be checked. Returns the released pks.
    """
    running = model.objects.filter(claim_token__isnull=False).exclude(claim_holder="")
    released = []
    for pk, token, holder in running.values_list("pk", "claim_token", "claim_holder"):
        if not holder_is_dead(holder):
            continue
        # The token in the filter keeps a claim taken meanwhile.
        if model.objects.filter(pk=pk, claim_token=token).update(
            claim_token=None, claim_holder="", next_poll_at=now
        ):
            released.append(pk)
    if released:
        logger.warning(
            "Released %d %s claim(s) whose poll died with its worker process; "
            "they are polled again now",
            len(released),
            model._meta.verbose_name,
        )
    return released


def _claimed(token, model):
    return list(model.objects.filter(claim_token=token).values_list("pk", flat=True))

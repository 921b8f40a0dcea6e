"""Adding, pausing and removing watched users: shared by the UI and commands."""

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from roundtable_sync.identifiers import clean_all, clean_identifier
from roundtable_sync.models import (
    WatchedUser,
)
from workflow import audit
from workflow.erasure import delete_stored_data

logger = logging.getLogger(__name__)

# Keeps each IN (...) list well under SQLite's bound-parameter limit.
_BATCH_SIZE = 500


class InvalidUserIdError(ValueError):
    pass


def clean_user_id(value):
    """Return the user ID with surrounding whitespace trimmed, or raise.

    Roundtable user IDs are opaque: any characters are kept, including
    "/", "?", "#", "%" and non-ASCII, and only the ends are trimmed.
    """
    return clean_identifier(value, "User ID", InvalidUserIdError)


def clean_user_ids(values):
    """Clean every ID and raise all errors together, if any."""
    return clean_all(values, clean_user_id, InvalidUserIdError)


@dataclass
class WatchlistChange:
    changed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def add_users(user_ids, added_by=None, note="", imported=False):
    """Add cleaned user IDs, skipping those already watched. Due at once.

    Records one audit event naming the added IDs, as "watchlist_imported"
    when ``imported`` (from a CSV file), else "watchlist_added"; the actor is
    ``added_by``, or the command line when it is None.

    Works in batches, so a CSV import of thousands of IDs costs a few
    queries per 500 IDs. When the UI and the command line add the same ID
    at the same moment, ignore_conflicts keeps the first row and the other
    caller reports the ID as skipped: its added_at does not match.
    """
    now = timezone.now()
    change = WatchlistChange()
    for start in range(0, len(user_ids), _BATCH_SIZE):
        batch = user_ids[start : start + _BATCH_SIZE]
        existing = set(
            WatchedUser.objects.filter(user_id__in=batch).values_list(
                "user_id", flat=True
            )
        )
        WatchedUser.objects.bulk_create(
            [
                WatchedUser(
                    user_id=user_id,
                    note=note,
                    added_by=added_by,
                    added_at=now,
                    next_poll_at=now,
                )
                for user_id in batch
                if user_id not in existing
            ],
            ignore_conflicts=True,
        )
        created = set(
            WatchedUser.objects.filter(user_id__in=batch, added_at=now)
            .exclude(user_id__in=existing)
            .values_list("user_id", flat=True)
        )
        for user_id in batch:
            if user_id in created:
                change.changed.append(user_id)
            else:
                change.skipped.append(user_id)
    if change.changed:
        logger.info(
            "%d user(s) added to the watchlist by %s: %s",
            len(change.changed),
            _actor(added_by),
            ", ".join(change.changed[:20]) + ("…" if len(change.changed) > 20 else ""),
        )
        audit.record(
            _audit_actor(added_by),
            "watchlist_imported" if imported else "watchlist_added",
            user_ids=change.changed,
            count=len(change.changed),
            skipped=len(change.skipped),
        )
    return change


def remove_users(user_ids, purge=False, removed_by=None):
    """Stop watching users; ``purge`` also deletes their stored sessions.

    Records one audit event per removed user in the same transaction:
    "watchlist_purged" with the deleted row counts, else "watchlist_removed".
    """
    change = WatchlistChange()
    with transaction.atomic():
        for user_id in user_ids:
            deleted, _ = WatchedUser.objects.filter(user_id=user_id).delete()
            if not deleted:
                change.skipped.append(user_id)
                continue
            change.changed.append(user_id)
            if purge:
                audit.record(
                    _audit_actor(removed_by),
                    "watchlist_purged",
                    target=user_id,
                    **_purge(user_id),
                )
            else:
                audit.record(_audit_actor(removed_by), "watchlist_removed", user_id)
    for user_id in change.changed:
        logger.info(
            "%s: removed from the watchlist by %s%s",
            user_id,
            _actor(removed_by),
            " with its stored sessions" if purge else "",
        )
    return change


def _purge(user_id):
    """Delete the stored data of one user; return the deleted row counts."""
    return delete_stored_data(user_id)


def set_active(watched_user, active, changed_by=None):
    """Pause or resume polling of one user; resuming makes it due at once."""
    with transaction.atomic():
        WatchedUser.objects.filter(pk=watched_user.pk).update(is_active=active)
        audit.record(
            _audit_actor(changed_by),
            "watchlist_resumed" if active else "watchlist_paused",
            watched_user.user_id,
        )
    if active:
        make_due(watched_user, timezone.now())
    logger.info(
        "%s: %s by %s",
        watched_user.user_id,
        "resumed" if active else "paused",
        _actor(changed_by),
    )


def make_due(watched_user, now):
    """Make an active user due now unless a poll of it is queued or running.

    A claim_token marks a queued or running poll until its lease, held in
    next_poll_at, runs out. Moving next_poll_at during the lease would let a
    second poll of the same user start beside the first. Returns whether the
    user is now due.
    """
    return bool(
        WatchedUser.objects.filter(pk=watched_user.pk, is_active=True)
        .filter(Q(claim_token__isnull=True) | Q(next_poll_at__lte=now))
        .update(next_poll_at=now)
    )


def _actor(user):
    return user.get_username() if user is not None else "command line"


def _audit_actor(user):
    return user if user is not None else audit.COMMAND_LINE

"""Erasure on request: delete everything stored for one Roundtable user ID."""

import logging

from django.db import transaction
from django.utils.timezone import now

from roundtable_sync.models import CoverageGap, PollRecord, Session, WatchedUser
from roundtable_sync.store import forget_response_digests, forget_sessions
from workflow import audit
from workflow.signals import user_erased

logger = logging.getLogger(__name__)


def stored_counts(user_id):
    """Return the number of rows of each kind this project stores for ``user_id``."""
    return {
        "sessions": Session.objects.filter(user_id=user_id).count(),
        "poll_records": PollRecord.objects.filter(user_id=user_id).count(),
        "coverage_gaps": CoverageGap.objects.filter(user_id=user_id).count(),
        "watched_users": WatchedUser.objects.filter(user_id=user_id).count(),
    }


def delete_stored_data(user_id):
    """Delete what every app stores for ``user_id``, except its watchlist row.

    Shared by erasure and the watchlist's purge. The caller holds a
    transaction, so a failing receiver undoes all of it. Returns the counts.
    """
    stored = Session.objects.filter(user_id=user_id)
    # The API may still list them (also through a tag watch): remember the
    # IDs, without the user, so polls skip them.
    forget_sessions(list(stored.values_list("pk", flat=True)), "erasure", now())
    total, by_model = stored.delete()
    sessions = by_model.get(Session._meta.label, 0)
    # Callers delete the watchlist row too, but a caller may keep it.
    forget_response_digests([user_id])
    counts = {
        "sessions": sessions,
        "session_related": total - sessions,
        "poll_records": PollRecord.objects.filter(user_id=user_id).delete()[0],
        "coverage_gaps": CoverageGap.objects.filter(user_id=user_id).delete()[0],
    }
    for _receiver, response in user_erased.send(sender=None, user_id=user_id):
        if response:
            counts.update(response)
    return counts


def erase_user(user_id, actor):
    """Delete all data stored for ``user_id`` in one transaction, and audit it.

    Works whether or not the ID is still watched. Returns {label: rows
    deleted}. "sessions" counts Session rows only, and the rows that cascade
    from them (checks, events, score changes and every row with a cascading
    foreign key to a session) are in "session_related". Other apps delete
    their own rows in receivers of ``workflow.signals.user_erased``.
    """
    with transaction.atomic():
        # The watchlist row goes first: a poll of this user holds that row's
        # lock while it stores, so it finishes before this erasure reads the
        # sessions, or finds the user gone and stores nothing.
        watched_users = WatchedUser.objects.filter(user_id=user_id).delete()[0]
        counts = delete_stored_data(user_id)
        counts["watched_users"] = watched_users
        audit.record(actor, "user_erased", target=user_id, **counts)
    logger.info("%s: all stored data erased (%s)", user_id, counts)
    return counts

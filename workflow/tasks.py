"""Worker tasks of the analyst workflow."""

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from roundtable_sync.models import CoverageGap, PollRecord, Session
from roundtable_sync.store import forget_response_digests, forget_sessions
from workflow import audit
from workflow.signals import retention_applied

logger = logging.getLogger(__name__)

# Sessions deleted per DELETE, so each statement holds the write lock briefly
# and a run never loads every expired session (with its checks and events)
# into memory at once.
RETENTION_BATCH_SIZE = 500


def apply_retention(now=None):
    """Delete sessions, poll records and coverage gaps older than the retention.

    ROUNDTABLE_RETENTION_DAYS of 0 keeps everything. A session's age is its
    session_time. Deleting a session cascades to its checks, events, score
    changes and every row with a cascading foreign key to it. Records one
    audit event with the counts when anything was deleted, and returns the
    counts.
    """
    days = settings.ROUNDTABLE_RETENTION_DAYS
    if not days:
        return None
    cutoff = (now or timezone.now()) - timedelta(days=days)
    sessions, related = _delete_sessions_before(cutoff, now or timezone.now())
    counts = {
        "sessions": sessions,
        "session_related": related,
        "poll_records": PollRecord.objects.filter(started_at__lt=cutoff).delete()[0],
        "coverage_gaps": CoverageGap.objects.filter(detected_at__lt=cutoff).delete()[0],
    }
    for _, extra in retention_applied.send(sender=apply_retention, cutoff=cutoff):
        counts.update(extra or {})
    logger.info("Retention of %d days, before %s: deleted %s", days, cutoff, counts)
    if any(counts.values()):
        audit.record(
            audit.WORKER,
            "retention_applied",
            retention_days=days,
            cutoff=cutoff.isoformat(),
            **counts,
        )
    return counts


def _delete_sessions_before(cutoff, now):
    """Delete expired sessions batch by batch; return (sessions, cascaded rows)."""
    sessions = related = 0
    expired = Session.objects.filter(session_time__lt=cutoff).order_by()
    while True:
        rows = list(expired.values_list("pk", "user_id")[:RETENTION_BATCH_SIZE])
        if not rows:
            return sessions, related
        batch = [pk for pk, _ in rows]
        # The API may still list them: remember them so polls skip them.
        forget_sessions(batch, "retention", now)
        forget_response_digests({user_id for _, user_id in rows})
        total, by_model = Session.objects.filter(pk__in=batch).delete()
        deleted = by_model.get(Session._meta.label, 0)
        sessions += deleted
        related += total - deleted

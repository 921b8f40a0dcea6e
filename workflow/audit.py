"""Recording analyst actions in the audit trail."""

import logging

from django.utils import timezone

from workflow.models import AuditEvent

logger = logging.getLogger(__name__)

COMMAND_LINE = "command line"
WORKER = "worker"


def record(actor, action, target="", **details):
    """Add an audit event and return it.

    ``actor`` is a Django user, or one of COMMAND_LINE and WORKER for actions
    without a signed-in user. ``details`` must be JSON-serialisable and must
    not contain purged data (an erasure records only what was removed).
    """
    user = actor if hasattr(actor, "get_username") else None
    label = actor.get_username() if user is not None else str(actor)
    event = AuditEvent.objects.create(
        occurred_at=timezone.now(),
        actor=user,
        actor_label=label,
        action=action,
        target=target,
        details=details,
    )
    logger.info("audit: %s %s %s", label, action, target)
    return event

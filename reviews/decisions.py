"""Recording decisions and reading the current ones."""

from django.db.models import Subquery
from django.utils import timezone

from reviews.models import Decision, newest_session_decision
from workflow import audit

# Decisions listed on a session or user page, newest first.
MAX_HISTORY = 100


def record_decision(analyst, kind, note, *, session=None, user_id=""):
    """Add a decision on ``session`` or on ``user_id``, audit it and return it."""
    decision = Decision.objects.create(
        session=session,
        user_id=user_id,
        kind=kind,
        note=note,
        decided_by=analyst,
        decided_by_label=analyst.get_username(),
        decided_at=timezone.now(),
    )
    target = f"session {session.pk}" if session is not None else f"user {user_id}"
    audit.record(analyst, "decision_recorded", target, kind=kind)
    return decision


def current_decisions(session_ids):
    """Return {session_id: its newest Decision} for the decided ones, in one query."""
    newest = newest_session_decision("session").values("pk")[:1]
    decisions = Decision.objects.filter(
        session__in=list(session_ids), pk=Subquery(newest)
    )
    return {decision.session_id: decision for decision in decisions}


def session_history(session):
    return list(Decision.objects.filter(session=session)[:MAX_HISTORY])


def user_history(user_id):
    return list(Decision.objects.filter(user_id=user_id)[:MAX_HISTORY])

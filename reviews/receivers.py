"""Receivers that keep decisions in step with erasure requests."""

from reviews.models import Decision


def erase_user_decisions(sender, user_id, **kwargs):
    """Delete decisions on an erased user as a whole.

    Decisions on the user's sessions go with the sessions (a cascade).
    """
    deleted, _ = Decision.objects.filter(user_id=user_id).delete()
    return {"user_decisions": deleted}

"""Score bands and flags: the one definition every page, export and alert uses.

Roundtable's best-practice defaults are to allow below 50, review from 50 and
block from 70. The vendor does not document how recommended_action derives
from the score, and the two disagree at times, so a session is flagged when
either its score or its action calls for a look.
"""

from dataclasses import dataclass

from django.conf import settings
from django.db import models
from django.db.models import Q


class Band(models.TextChoices):
    ALLOW = "allow", "Allow"
    REVIEW = "review", "Review"
    BLOCK = "block", "Block"


# The recommended_action values that ask for a human or a rejection.
FLAGGED_ACTIONS = (
    "Manual review or require additional verification",
    "Auto-reject or high-priority review",
)


@dataclass(frozen=True)
class Thresholds:
    review: int
    block: int

    def band(self, score):
        """Return the Band of ``score``, or None when there is no score."""
        if score is None:
            return None
        if score >= self.block:
            return Band.BLOCK
        if score >= self.review:
            return Band.REVIEW
        return Band.ALLOW

    def is_high_risk(self, score):
        return self.band(score) == Band.BLOCK

    def is_flagged(self, score, action):
        return self.band(score) in (Band.REVIEW, Band.BLOCK) or (
            action in FLAGGED_ACTIONS
        )

    def band_q(self, band, field="risk_score"):
        """Return a filter selecting sessions in ``band``."""
        if band == Band.BLOCK:
            return Q(**{f"{field}__gte": self.block})
        if band == Band.REVIEW:
            return Q(**{f"{field}__gte": self.review, f"{field}__lt": self.block})
        return Q(**{f"{field}__lt": self.review})

    def high_risk_q(self):
        return self.band_q(Band.BLOCK)

    def flagged_q(self):
        return Q(risk_score__gte=self.review) | Q(
            recommended_action__in=FLAGGED_ACTIONS
        )


def current_thresholds():
    """Return the thresholds in force, from ROUNDTABLE_*_THRESHOLD settings."""
    return Thresholds(
        review=settings.ROUNDTABLE_REVIEW_THRESHOLD,
        block=settings.ROUNDTABLE_BLOCK_THRESHOLD,
    )

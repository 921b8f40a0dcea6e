"""Score bands and flags: the one definition every page, export and alert uses.

Roundtable's best-practice defaults are to allow below 50, review from 50 and
block from 70. The vendor does not document how recommended_action derives
from the score, and the two disagree at times, so a session is flagged when
either its score or its action calls for a look.
"""

from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
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

    def flagged_q(self, field="risk_score"):
        return Q(**{f"{field}__gte": self.review}) | Q(
            recommended_action__in=FLAGGED_ACTIONS
        )


# Seconds a process reuses the thresholds it read. Adopting new thresholds
# clears the adopting process's copy at once; other processes (other web
# workers, the worker) follow within this time.
THRESHOLDS_CACHE_SECONDS = 10
_CACHE_KEY = "roundtable_sync:thresholds"


def current_thresholds():
    """Return the thresholds in force: the newest adopted, else the settings."""
    thresholds = cache.get(_CACHE_KEY)
    if thresholds is None:
        thresholds = _load_thresholds()
        cache.set(_CACHE_KEY, thresholds, THRESHOLDS_CACHE_SECONDS)
    return thresholds


def default_thresholds():
    return Thresholds(
        review=settings.ROUNDTABLE_REVIEW_THRESHOLD,
        block=settings.ROUNDTABLE_BLOCK_THRESHOLD,
    )


def forget_thresholds():
    """Drop this process's cached thresholds, after adopting new ones."""
    cache.delete(_CACHE_KEY)


def _load_thresholds():
    from roundtable_sync.models import ThresholdSetting

    latest = ThresholdSetting.objects.order_by("-adopted_at", "-id").first()
    if latest is None:
        return default_thresholds()
    return Thresholds(review=latest.review, block=latest.block)

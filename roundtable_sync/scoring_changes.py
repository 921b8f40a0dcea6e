"""Known changes to how Roundtable computes risk scores.

A step in a risk-over-time chart on one of these dates may come from the
vendor's scoring rather than from a change in behaviour, so charts mark them.
Roundtable announced each change by month only, so each date is the first of
its month.
"""

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class ScoringChange:
    date: date
    description: str


SCORING_CHANGES = (
    ScoringChange(
        date(2026, 4, 1),
        "April 2026: Roundtable changed its check weights (exact day not published).",
    ),
    ScoringChange(
        date(2026, 5, 1),
        "May 2026: Roundtable changed its check weights again "
        "(exact day not published).",
    ),
    ScoringChange(
        date(2026, 6, 1),
        "June 2026: customers can set their own check weights from now on, so "
        "scores depend on each customer's settings (exact day not published).",
    ),
)


def scoring_changes_between(first, last):
    """Return the known scoring changes dated from ``first`` to ``last``."""
    return [change for change in SCORING_CHANGES if first <= change.date <= last]

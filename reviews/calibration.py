"""Replaying stored sessions against candidate thresholds.

Every figure is one aggregate query: the band counts over all sessions, and
the agreement over each decided session's current (newest) decision.
"""

from dataclasses import dataclass

from django.db.models import Count, Q, Subquery

from reviews.models import (
    DECISION_BANDS,
    Decision,
    DecisionKind,
    newest_session_decision,
)
from roundtable_sync.bands import FLAGGED_ACTIONS, Band
from roundtable_sync.models import Session

# The band each documented recommended action amounts to. Roundtable does
# not document this mapping: accepting with monitoring still lets the
# session through, so it counts as allow.
ACTION_BANDS = {
    "Auto-accept": Band.ALLOW,
    "Accept with monitoring": Band.ALLOW,
    FLAGGED_ACTIONS[0]: Band.REVIEW,
    FLAGGED_ACTIONS[1]: Band.BLOCK,
}
# Distinct recommended actions listed, most decided first. Actions are API
# text, so a misbehaving API could send any number of them.
MAX_ACTIONS = 20


@dataclass(frozen=True)
class Agreement:
    """Decided sessions in one band (or with one action), by decision kind."""

    by_kind: dict
    # The band the sessions are in, or None when no band applies.
    band: Band | None

    @property
    def decided(self):
        return sum(self.by_kind.values())

    @property
    def agreeing(self):
        if self.band is None:
            return None
        return sum(
            count
            for kind, count in self.by_kind.items()
            if DECISION_BANDS[kind] == self.band
        )

    @property
    def share(self):
        """Return the agreeing share in percent, or None without decisions."""
        if not self.decided or self.band is None:
            return None
        return round(100 * self.agreeing / self.decided, 1)

    @property
    def mix(self):
        """Return [(kind label, count)] in the order of DecisionKind."""
        return [(kind.label, self.by_kind[kind]) for kind in DecisionKind]


@dataclass(frozen=True)
class BandRow:
    band: Band
    current_sessions: int
    candidate_sessions: int
    current: Agreement
    candidate: Agreement


def band_counts(thresholds_by_name):
    """Return {name: {band: sessions}} plus totals, in one query."""
    aggregates = {
        "total": Count("pk"),
        "unscored": Count("pk", filter=Q(risk_score=None)),
    }
    for name, thresholds in thresholds_by_name.items():
        for band in Band:
            aggregates[f"{name}:{band.value}"] = Count(
                "pk", filter=thresholds.band_q(band)
            )
    return Session.objects.aggregate(**aggregates)


def current_session_decisions():
    """Return the newest decision of every decided session."""
    newest = newest_session_decision("session").values("pk")[:1]
    return Decision.objects.filter(session__isnull=False, pk=Subquery(newest))


def band_agreement(thresholds_by_name):
    """Return {name: {band: Agreement}} for decided sessions, in one query."""
    aggregates = {}
    for name, thresholds in thresholds_by_name.items():
        for band in Band:
            in_band = thresholds.band_q(band, field="session__risk_score")
            for kind in DecisionKind:
                aggregates[f"{name}:{band.value}:{kind.value}"] = Count(
                    "pk", filter=in_band & Q(kind=kind)
                )
    counts = current_session_decisions().aggregate(**aggregates)
    return {
        name: {
            band: Agreement(
                {
                    kind: counts[f"{name}:{band.value}:{kind.value}"]
                    for kind in DecisionKind
                },
                band,
            )
            for band in Band
        }
        for name in thresholds_by_name
    }


def action_agreement():
    """Return [(action, Agreement)] for the most decided recommended actions."""
    per_kind = {kind.value: Count("pk", filter=Q(kind=kind)) for kind in DecisionKind}
    rows = (
        current_session_decisions()
        .values("session__recommended_action")
        .annotate(total=Count("pk"), **per_kind)
        .order_by("-total", "session__recommended_action")[:MAX_ACTIONS]
    )
    return [
        (
            row["session__recommended_action"],
            Agreement(
                {kind: row[kind.value] for kind in DecisionKind},
                ACTION_BANDS.get(row["session__recommended_action"]),
            ),
        )
        for row in rows
    ]


def compare(current, candidate):
    """Return the band rows and totals for the current and candidate thresholds."""
    thresholds_by_name = {"current": current, "candidate": candidate}
    counts = band_counts(thresholds_by_name)
    agreement = band_agreement(thresholds_by_name)
    rows = [
        BandRow(
            band=band,
            current_sessions=counts[f"current:{band.value}"],
            candidate_sessions=counts[f"candidate:{band.value}"],
            current=agreement["current"][band],
            candidate=agreement["candidate"][band],
        )
        for band in Band
    ]
    return {
        "rows": rows,
        "total": counts["total"],
        "unscored": counts["unscored"],
        "current_overall": _overall(agreement["current"].values()),
        "candidate_overall": _overall(agreement["candidate"].values()),
    }


def _overall(agreements):
    """Return (agreeing, decided, share in percent or None) across bands."""
    decided = sum(agreement.decided for agreement in agreements)
    agreeing = sum(agreement.agreeing for agreement in agreements)
    share = round(100 * agreeing / decided, 1) if decided else None
    return {"agreeing": agreeing, "decided": decided, "share": share}

"""Analysts' review decisions on sessions and users, kept as a history."""

from django.conf import settings
from django.db import models
from django.db.models import OuterRef, Q

from roundtable_sync.bands import Band


class DecisionKind(models.TextChoices):
    CONFIRMED_BOT = "confirmed_bot", "Confirmed bot"
    LEGITIMATE = "legitimate", "Legitimate (false positive)"
    NEEDS_EVIDENCE = "needs_evidence", "Needs more evidence"
    ESCALATED = "escalated", "Escalated"


# The band each decision puts a session in, for calibration.
DECISION_BANDS = {
    DecisionKind.CONFIRMED_BOT: Band.BLOCK,
    DecisionKind.LEGITIMATE: Band.ALLOW,
    DecisionKind.NEEDS_EVIDENCE: Band.REVIEW,
    DecisionKind.ESCALATED: Band.REVIEW,
}


class DecisionQuerySet(models.QuerySet):
    """Decisions are added, never edited: bulk updates raise.

    Bulk deletes stay allowed, for erasure on request and retention only.
    """

    def update(self, **kwargs):
        raise PermissionError("Decisions cannot be changed; record a new one.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise PermissionError("Decisions cannot be changed; record a new one.")


class Decision(models.Model):
    """One analyst decision on a session or on a user.

    Rows are only ever added: the current decision of a session or user is
    its newest row, and older rows remain as its history. Deleting a
    session (retention, erasure) deletes its decisions with it.
    """

    session = models.ForeignKey(
        "roundtable_sync.Session",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="decisions",
    )
    # The Roundtable user ID of a decision on a whole user, else empty.
    user_id = models.CharField(max_length=255, blank=True)
    kind = models.CharField(max_length=32, choices=DecisionKind.choices)
    note = models.TextField(blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # The analyst's username when deciding, kept if the account is deleted.
    decided_by_label = models.CharField(max_length=150)
    decided_at = models.DateTimeField()

    objects = DecisionQuerySet.as_manager()

    class Meta:
        ordering = ["-decided_at", "-id"]
        indexes = [
            # A session's newest decision (tables, filters, export, queue).
            models.Index(
                fields=["session", "-decided_at", "-id"],
                name="decision_session_newest",
            ),
            models.Index(
                fields=["user_id", "-decided_at", "-id"],
                name="decision_user_newest",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(Q(session__isnull=False) & Q(user_id=""))
                | (Q(session__isnull=True) & ~Q(user_id="")),
                name="decision_on_session_xor_user",
            ),
        ]

    def __str__(self):
        target = f"session {self.session_id}" if self.session_id else self.user_id
        return f"{self.get_kind_display()} on {target}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PermissionError("Decisions cannot be changed: record a new one.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("Decisions cannot be deleted: record a new one.")


def newest_session_decision(session_ref="pk"):
    """Return the newest decision of the session ``session_ref`` points at,
    as a queryset for Subquery or Exists in a query over sessions."""
    return Decision.objects.filter(session=OuterRef(session_ref)).order_by(
        "-decided_at", "-id"
    )

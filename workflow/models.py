"""Analyst workflow records: the audit trail and the role permissions."""

from django.conf import settings
from django.db import models


class AnalystAccess(models.Model):
    """Holder of the role permissions; it has no table and no rows.

    Analysts get both permissions through their group, viewers get neither
    (export can be granted to a viewer one by one).
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            (
                "act",
                "Can decide on sessions and change the watchlist, rules and thresholds",
            ),
            ("export", "Can export sessions as CSV"),
        ]

    def __str__(self):
        return "Analyst access"


class AuditEventQuerySet(models.QuerySet):
    """Queries of audit events that reject bulk updates and deletes.

    Deleting a Django account still sets ``actor`` to NULL, because the
    deletion collector uses the model's plain base manager.

    NOTE: the database itself does not forbid changes, so raw SQL or
    ``AuditEvent._base_manager`` can still alter rows.
    """

    def update(self, **kwargs):
        raise PermissionError("Audit events cannot be changed.")

    def delete(self):
        raise PermissionError("Audit events cannot be deleted.")


class AuditEvent(models.Model):
    """One analyst action, as recorded at the time. Never changed or deleted."""

    occurred_at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # The actor's name when recorded: "command line", "worker", or the
    # username (kept even if the account is deleted later).
    actor_label = models.CharField(max_length=150)
    action = models.CharField(max_length=64, db_index=True)
    target = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-occurred_at", "-id"]

    def __str__(self):
        return f"{self.occurred_at:%Y-%m-%d %H:%M} {self.actor_label} {self.action}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PermissionError("Audit events cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("Audit events cannot be deleted.")

"""Alert rules, the alerts they raised, and their webhook deliveries."""

from django.conf import settings
from django.db import models


class RuleKind(models.TextChoices):
    BLOCK_BAND = "block_band", "Session entered the block band"
    AUTO_REJECT = "auto_reject", "Session recommended for auto-reject"
    SCORE_RISE = "score_rise", "Score rose sharply between polls"
    FIRST_DETECTION = "first_detection", "Check detected for the first time"
    SYNC_FAILING = "sync_failing", "User failing to sync"
    BACKFILL = "backfill", "History stored for a newly watched user"


class WebhookEndpoint(models.Model):
    """A URL that receives alerts as signed JSON POSTs."""

    name = models.CharField(max_length=100)
    url = models.URLField(max_length=2000)
    # Our signing key, shared with the receiver: shown once when generated.
    secret = models.CharField(max_length=64)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["name", "id"]

    def __str__(self):
        return self.name


class AlertRule(models.Model):
    """One kind of alert: whether it fires, its parameter and whom it notifies.

    There is one rule per kind, created by a data migration.
    """

    kind = models.CharField(max_length=32, choices=RuleKind.choices, unique=True)
    enabled = models.BooleanField(default=True)
    # Points for SCORE_RISE, minutes for SYNC_FAILING, unused otherwise.
    threshold = models.PositiveIntegerField(null=True, blank=True)
    # FIRST_DETECTION only: check names to alert on; empty means every check.
    check_names = models.JSONField(default=list, blank=True)
    email_recipients = models.JSONField(default=list, blank=True)
    webhooks = models.ManyToManyField(WebhookEndpoint, blank=True, related_name="rules")
    updated_at = models.DateTimeField(null=True, blank=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.get_kind_display()


class Alert(models.Model):
    """One alert raised by a rule; read state is shared by all analysts."""

    rule = models.ForeignKey(AlertRule, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=32, choices=RuleKind.choices)
    # SHA-256 of what makes the alert unique (rule, session, check or failure
    # episode), so a repeated poll or a second worker cannot raise it twice.
    dedupe_key = models.CharField(max_length=64, unique=True)
    user_id = models.CharField(max_length=255)
    watched_user = models.ForeignKey(
        "roundtable_sync.WatchedUser",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    session_id = models.CharField(max_length=255, blank=True)
    title = models.TextField()
    # Score, band, action, checks that fired and kind-specific numbers.
    details = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True)
    read_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="alert_newest_idx"),
            # The unread count in the navigation and the unread filter.
            models.Index(
                fields=["-created_at", "-id"],
                condition=models.Q(read_at__isnull=True),
                name="alert_unread_idx",
            ),
        ]

    def __str__(self):
        return self.title


class DetectedCheck(models.Model):
    """A check name already seen Detected for a user, for first-detection alerts."""

    user_id = models.CharField(max_length=255)
    check_name = models.CharField(max_length=255)
    first_seen_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user_id", "check_name"], name="unique_detected_check"
            )
        ]

    def __str__(self):
        return f"{self.user_id}: {self.check_name}"


class AlertDelivery(models.Model):
    """One attempt, done or due, to POST an alert to a webhook endpoint."""

    alert = models.ForeignKey(
        Alert, on_delete=models.CASCADE, related_name="deliveries"
    )
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    attempt = models.PositiveSmallIntegerField()
    due_at = models.DateTimeField()
    # Set by the conditional UPDATE that claims the attempt for one worker.
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    succeeded = models.BooleanField(null=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-due_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["alert", "endpoint", "attempt"], name="unique_delivery_attempt"
            )
        ]
        indexes = [
            # The dispatcher's scan for attempts that are due.
            models.Index(
                fields=["due_at"],
                condition=models.Q(started_at__isnull=True),
                name="delivery_due_idx",
            ),
        ]

    def __str__(self):
        return f"alert {self.alert_id} to {self.endpoint} #{self.attempt}"

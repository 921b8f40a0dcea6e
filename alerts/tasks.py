"""django-q2 tasks: alert e-mails, webhook attempts and their retries.

A failed webhook attempt adds the next attempt as an AlertDelivery row with a
due time; the every-minute dispatch_deliveries task queues the due rows. Keeping
retries in that table, rather than one django-q2 Schedule per retry, lets the
UI show pending and past attempts from one place, and a conditional UPDATE
claims each attempt, so a row queued twice is still sent once.
"""

import logging

from django.utils import timezone
from django_q.tasks import async_task

from alerts import webhooks
from alerts.email import send_alert_email as send_email
from alerts.models import Alert, AlertDelivery

logger = logging.getLogger(__name__)

DISPATCH_SCHEDULE_NAME = "alerts: dispatch webhook retries"
# Attempts queued per dispatcher run; the rest wait for the next minute.
MAX_DISPATCH = 200


def send_alert_email(alert_pk):
    alert = Alert.objects.select_related("rule").get(pk=alert_pk)
    recipients = alert.rule.email_recipients
    if not recipients:
        return 0
    sent = send_email(alert, recipients)
    logger.info("Alert %s e-mailed to %d recipient(s)", alert_pk, len(recipients))
    return sent


def dispatch_deliveries():
    """Queue every webhook attempt that is due. Runs every minute."""
    due = AlertDelivery.objects.filter(
        started_at__isnull=True, due_at__lte=timezone.now()
    ).order_by("due_at")
    pks = list(due.values_list("pk", flat=True)[:MAX_DISPATCH])
    for pk in pks:
        async_task(deliver_webhook, pk, group="alerts")
    if pks:
        logger.info("Queued %d webhook attempt(s)", len(pks))
    return len(pks)


def deliver_webhook(delivery_pk):
    """Make one claimed webhook attempt and record it; add a retry on failure."""
    now = timezone.now()
    claimed = AlertDelivery.objects.filter(
        pk=delivery_pk, started_at__isnull=True
    ).update(started_at=now)
    if not claimed:
        return None  # Sent by another worker, or already done.
    # NOTE: an attempt whose worker dies between this claim and the record
    # below stays "sending" and gets no retry.
    delivery = AlertDelivery.objects.select_related("alert", "endpoint").get(
        pk=delivery_pk
    )
    endpoint = delivery.endpoint
    if endpoint.enabled:
        result = webhooks.post_alert(endpoint, delivery.alert, now)
    else:
        result = webhooks.AttemptResult(False, error="The endpoint is disabled.")

    delivery.finished_at = timezone.now()
    delivery.succeeded = result.succeeded
    delivery.status_code = result.status_code
    delivery.error = result.error
    delivery.save(update_fields=["finished_at", "succeeded", "status_code", "error"])
    if result.succeeded:
        logger.info("Alert %s delivered to webhook %s", delivery.alert_id, endpoint.pk)
        return True
    _schedule_retry(delivery, endpoint, now)
    return False


def _schedule_retry(delivery, endpoint, now):
    if not endpoint.enabled or delivery.attempt >= webhooks.MAX_ATTEMPTS:
        logger.error(
            "Alert %s not delivered to webhook %s after %d attempt(s): %s",
            delivery.alert_id,
            endpoint.pk,
            delivery.attempt,
            delivery.error,
        )
        return
    due_at = now + webhooks.retry_delay(delivery.attempt)
    AlertDelivery.objects.get_or_create(
        alert_id=delivery.alert_id,
        endpoint=endpoint,
        attempt=delivery.attempt + 1,
        defaults={"due_at": due_at},
    )
    logger.warning(
        "Alert %s to webhook %s failed (attempt %d): %s; retrying at %s",
        delivery.alert_id,
        endpoint.pk,
        delivery.attempt,
        delivery.error,
        due_at.isoformat(),
    )

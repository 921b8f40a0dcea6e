"""Save alert candidates exactly once and send the new ones out."""

import logging

from django.db import IntegrityError, transaction
from django_q.tasks import async_task

from alerts.models import Alert, AlertDelivery

logger = logging.getLogger(__name__)


def raise_alerts(candidates):
    """Save the candidates whose dedupe key is new and notify for each; return them.

    The unique dedupe key decides: a candidate already raised, by an earlier
    poll or by another worker at the same moment, is dropped.
    """
    raised = []
    for candidate in candidates:
        try:
            with transaction.atomic():
                candidate.save(force_insert=True)
        except IntegrityError:
            if not Alert.objects.filter(dedupe_key=candidate.dedupe_key).exists():
                raise
            continue
        logger.info("Alert %s raised: %s", candidate.pk, candidate.kind)
        raised.append(candidate)
        notify(candidate)
    return raised


def notify(alert):
    """Queue the e-mail and the first webhook attempts of a new alert."""
    rule = alert.rule
    if rule.email_recipients:
        async_task("alerts.tasks.send_alert_email", alert.pk, group="alerts")
    for endpoint in rule.webhooks.filter(enabled=True):
        delivery = AlertDelivery.objects.create(
            alert=alert, endpoint=endpoint, attempt=1, due_at=alert.created_at
        )
        async_task("alerts.tasks.deliver_webhook", delivery.pk, group="alerts")
